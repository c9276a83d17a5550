#!/usr/bin/env python3
"""Summarise an Autobahn TestSuite run and compare it with an expected file.

Usage:
  report.py INDEX_JSON AGENT --expected FILE [--cases PATTERNS] [--exclude PATTERNS]
  report.py INDEX_JSON AGENT --expected FILE --write-expected [--cases ...]

INDEX_JSON is the suite's index.json (reports/servers/index.json for the
fuzzingclient run against our server, reports/clients/index.json for the
fuzzingserver run against our client); AGENT is the agent name in it.

Prints, in order:
  * a table with one line per case group (first number of the case id),
    counting OK / NON-STRICT / INFORMATIONAL / UNIMPLEMENTED / FAILED;
  * every non-OK case with behavior, behaviorClose and the description,
    result and resultClose text of its per-case JSON report;
  * every difference from the expected file (better or worse);
  * a final line "N passed, M failed".

A case is OK only if both behavior and behaviorClose are OK. Otherwise its
class is the worst of the two, in this order (worst first):
  FAILED (also: WRONG CODE, UNCLEAN, FAILED BY CLIENT, anything unknown),
  UNIMPLEMENTED, NON-STRICT, INFORMATIONAL.

Comparison: the selection (--cases/--exclude, comma-separated patterns with
'*' wildcards, matched like the suite does) says which cases were meant to
run. Each selected case of the expected file must be in the run with the same
behavior and behaviorClose (passed), else it failed (differs, or missing from
the run). A case in the run but not in the expected file also fails. Expected
cases outside the selection are "not run" and are neither passed nor failed.
--fail TEXT adds a failure that happened outside the suite (e.g. the server
crashed) so it is counted and printed too.

--write-expected records the run's results into the expected file (cases not
in the run keep their old entries), prints what changed, and exits 0.

Exit status: 0 if no failures, 1 if failures, 2 on usage or input errors.
"""
import argparse
import json
import os
import re
import sys

CLASSES = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"]
# Rank of each class from best to worst, for "better"/"worse" and combining.
RANK = {"OK": 0, "INFORMATIONAL": 1, "NON-STRICT": 2, "UNIMPLEMENTED": 3, "FAILED": 4}
TEXT_LIMIT = 500  # characters of description/result text shown per field


def die(msg):
    print("report.py: error: %s" % msg, file=sys.stderr)
    sys.exit(2)


def case_key(case_id):
    """Numeric sort key: '6.10.2' -> (6, 10, 2)."""
    return tuple(int(p) if p.isdigit() else p for p in case_id.split("."))


def group_of(case_id):
    return case_id.split(".", 1)[0]


def classify_one(behavior):
    if behavior in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"):
        return behavior
    return "FAILED"  # FAILED, WRONG CODE, UNCLEAN, FAILED BY CLIENT, unknown


def classify(behavior, behavior_close):
    a, b = classify_one(behavior), classify_one(behavior_close)
    return a if RANK[a] >= RANK[b] else b


def pair(entry):
    return "%s/%s" % (entry["behavior"], entry["behaviorClose"])


def compile_patterns(text):
    """'1.*,2.3' -> list of regexes, matched the same way as the suite."""
    pats = [p.strip() for p in (text or "").split(",") if p.strip()]
    return [re.compile("^" + re.escape(p).replace(r"\*", ".*") + "$") for p in pats]


def selected(case_id, include, exclude):
    return any(p.match(case_id) for p in include) and not any(p.match(case_id) for p in exclude)


def shorten(text):
    text = " ".join(re.sub(r"</?[a-zA-Z]+>", "", str(text)).split())  # drop <b> etc.
    if len(text) > TEXT_LIMIT:
        text = text[: TEXT_LIMIT - 4] + " ..."
    return text


def load_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        die("%s not found: %s" % (what, path))
    except (OSError, ValueError) as e:
        die("cannot read %s %s: %s" % (what, path, e))


def load_expected(path):
    data = load_json(path, "expected file")
    cases = data.get("cases") if isinstance(data, dict) else None
    if not isinstance(cases, dict):
        die("%s: expected an object with a \"cases\" map" % path)
    for cid, entry in cases.items():
        if not (isinstance(entry, dict) and "behavior" in entry and "behaviorClose" in entry):
            die("%s: case %s needs \"behavior\" and \"behaviorClose\"" % (path, cid))
    return data


def write_expected(path, data):
    """One case per line, sorted numerically, so diffs are easy to review."""
    lines = ["{"]
    for key, value in data.items():
        if key == "cases":
            continue
        if isinstance(value, list):  # e.g. the comment: one line per item
            items = [json.dumps(v, ensure_ascii=False) for v in value]
            lines.append("  %s: [" % json.dumps(key))
            lines.extend("    %s%s" % (item, "," if i + 1 < len(items) else "") for i, item in enumerate(items))
            lines.append("  ],")
        else:
            lines.append("  %s: %s," % (json.dumps(key), json.dumps(value, ensure_ascii=False)))
    lines.append('  "cases": {')
    ids = sorted(data["cases"], key=case_key)
    for i, cid in enumerate(ids):
        e = data["cases"][cid]
        entry = {"behavior": e["behavior"], "behaviorClose": e["behaviorClose"]}
        lines.append("    %s: %s%s" % (json.dumps(cid), json.dumps(entry), "," if i + 1 < len(ids) else ""))
    lines.append("  }")
    lines.append("}")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def case_details(index_dir, entry):
    """Description/result texts from the per-case JSON report, if readable."""
    name = entry.get("reportfile")
    if not name:
        return {}
    try:
        with open(os.path.join(index_dir, name), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        return {"result": "(per-case report %s unreadable: %s)" % (name, e)}


def print_summary(run):
    groups = {}
    for cid, entry in run.items():
        counts = groups.setdefault(group_of(cid), dict.fromkeys(CLASSES, 0))
        counts[classify(entry["behavior"], entry["behaviorClose"])] += 1
    header = ["group", "cases"] + CLASSES
    widths = [5, 5] + [max(len(c), 2) for c in CLASSES]
    fmt = "  ".join("%%%ds" % w if i else "%%-%ds" % w for i, w in enumerate(widths))
    print(fmt % tuple(header))
    total = dict.fromkeys(CLASSES, 0)
    for g in sorted(groups, key=lambda g: case_key(g)):
        c = groups[g]
        print(fmt % tuple([g, sum(c.values())] + [c[k] for k in CLASSES]))
        for k in CLASSES:
            total[k] += c[k]
    print(fmt % tuple(["total", sum(total.values())] + [total[k] for k in CLASSES]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("index", help="path to the suite's index.json")
    ap.add_argument("agent", nargs="?", help="agent name in index.json (default: the only one)")
    ap.add_argument("--expected", required=True, help="expected results file (JSON)")
    ap.add_argument("--cases", default="*", help="selected case patterns, comma-separated (default: *)")
    ap.add_argument("--exclude", default="", help="excluded case patterns, comma-separated")
    ap.add_argument("--fail", action="append", default=[], metavar="TEXT",
                    help="count an extra failure that happened outside the suite")
    ap.add_argument("--write-expected", action="store_true",
                    help="record this run's results into the expected file")
    args = ap.parse_args()

    # A missing index or agent means no case ran: report every selected case as
    # missing rather than stopping, so the failure count stays meaningful.
    run_errors = []
    if os.path.exists(args.index):
        index = load_json(args.index, "suite index")
        if not isinstance(index, dict):
            die("%s is not a suite index (expected an object of agents)" % args.index)
    else:
        index = {}
        run_errors.append("no suite index at %s: the suite wrote no results" % args.index)
    agent = args.agent
    if agent is None:
        if len(index) > 1:
            die("%s has several agents (%s); name one" % (args.index, ", ".join(sorted(index))))
        agent = next(iter(index), "(none)")
    if agent in index:
        run = index[agent]
    else:
        run = {}
        if os.path.exists(args.index):
            run_errors.append("agent %r not in %s (agents there: %s)"
                              % (agent, args.index, ", ".join(sorted(index)) or "none"))
    for text in run_errors:
        print("report.py: ERROR: %s" % text)
    if args.write_expected and not run:
        die("no results to write to the expected file")
    index_dir = os.path.dirname(os.path.abspath(args.index))
    include, exclude = compile_patterns(args.cases), compile_patterns(args.exclude)

    duration_ms = sum(e.get("duration") or 0 for e in run.values())
    print("Autobahn results for agent %s: %d cases (%s), suite time %.1f s"
          % (agent, len(run), os.path.relpath(args.index), duration_ms / 1000.0))
    print()
    print_summary(run)

    expected_data = load_expected(args.expected) if os.path.exists(args.expected) or not args.write_expected \
        else {"cases": {}}
    expected = expected_data["cases"]

    # Every non-OK case, with the suite's explanation.
    non_ok = [cid for cid in sorted(run, key=case_key)
              if classify(run[cid]["behavior"], run[cid]["behaviorClose"]) != "OK"]
    print()
    print("Non-OK cases: %d" % len(non_ok))
    for cid in non_ok:
        e = run[cid]
        exp = expected.get(cid)
        if exp is None:
            note = "not in expected file"
        elif pair(exp) == pair(e):
            note = "as expected"
        else:
            note = "DIFFERS: expected %s" % pair(exp)
        print("  %s  behavior=%s  behaviorClose=%s  remoteCloseCode=%s  [%s]"
              % (cid, e["behavior"], e["behaviorClose"], e.get("remoteCloseCode"), note))
        d = case_details(index_dir, e)
        for field in ("description", "result", "resultClose"):
            if d.get(field):
                print("      %-12s %s" % (field + ":", shorten(d[field])))

    if args.write_expected:
        changes = []
        for cid in sorted(run, key=case_key):
            new = {"behavior": run[cid]["behavior"], "behaviorClose": run[cid]["behaviorClose"]}
            old = expected.get(cid)
            if old is None or pair(old) != pair(new):
                changes.append("  %s: %s -> %s" % (cid, pair(old) if old else "(absent)", pair(new)))
            expected[cid] = new
        write_expected(args.expected, expected_data)
        print()
        print("Wrote %s: %d cases from this run, %d changed, %d kept from before"
              % (args.expected, len(run), len(changes), len(expected) - len(run)))
        if changes:
            print("\n".join(changes))
        print("Review the change (git diff %s) before committing it: the file is the gate." % args.expected)
        return 0

    # Compare with the expected file.
    passed, failures, not_run, ignored = 0, [], 0, 0
    for cid in sorted(set(expected) | set(run), key=case_key):
        exp, got = expected.get(cid), run.get(cid)
        if not selected(cid, include, exclude):
            if got is None:
                not_run += 1
            else:
                ignored += 1
            continue
        if exp is None:
            failures.append("  NEW      %s: got %s, but the case is not in the expected file" % (cid, pair(got)))
        elif got is None:
            failures.append("  MISSING  %s: selected but absent from the run (expected %s)" % (cid, pair(exp)))
        elif pair(exp) != pair(got):
            re_, rg = RANK[classify(exp["behavior"], exp["behaviorClose"])], \
                RANK[classify(got["behavior"], got["behaviorClose"])]
            how = "BETTER" if rg < re_ else "WORSE" if rg > re_ else "CHANGED"
            failures.append("  %-8s %s: expected %s, got %s" % (how, cid, pair(exp), pair(got)))
        else:
            passed += 1
    for text in run_errors + args.fail:
        failures.append("  ERROR    %s" % text)

    print()
    print("Comparison with %s (cases: %s; exclude: %s)"
          % (os.path.relpath(args.expected), args.cases, args.exclude or "none"))
    if not_run:
        print("  not run (outside the selection, not counted): %d cases" % not_run)
    if ignored:
        print("  in the run but outside the selection (ignored): %d cases" % ignored)
    if failures:
        print("Differences (every change needs review; if it is intended, update the expected file):")
        print("\n".join(failures))
    else:
        print("  no differences")
    print("%d passed, %d failed" % (passed, len(failures)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
