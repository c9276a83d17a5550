#!/usr/bin/env bash
# Install the Autobahn TestSuite (wstest) into a cached Python 2.7 virtualenv.
#
# The suite (autobahntestsuite on PyPI) only runs on Python 2.7, and its sdist
# declares no dependencies, so we create a 2.7 env and install a fully pinned
# dependency set with --no-deps.
#
# Idempotent: if the cached env already has a working wstest, nothing is done.
# Prints progress to stderr; stdout is exactly one line: the absolute path of
# the wstest executable. Use it as:  WSTEST="$(bash autobahn/setup.sh)"
#
# Environment:
#   WSECHO_CACHE   cache root (default: $HOME/.cache/wsecho)
#   WSECHO_PY27    path to a python2.7 interpreter (default: pyenv's 2.7.18,
#                  then python2.7 on PATH)
set -euo pipefail

die() { echo "autobahn/setup.sh: ERROR: $*" >&2; exit 1; }
log() { echo "autobahn/setup.sh: $*" >&2; }

CACHE="${WSECHO_CACHE:-$HOME/.cache/wsecho}"
VENV="$CACHE/autobahn-py27"
WSTEST="$VENV/bin/wstest"
VIRTUALENV_VERSION=20.21.1   # last virtualenv release able to create 2.7 envs
VIRTUALENV_DIR="$CACHE/virtualenv-$VIRTUALENV_VERSION"

# Fully pinned: the last releases of each package that still support Python 2.7
# and are compatible with autobahntestsuite 25.10.1.
PINS=(
  autobahntestsuite==25.10.1 autobahn==0.10.9 txaio==2.1.0
  Twisted==19.10.0 zope.interface==4.6.0 incremental==16.10.1 constantly==15.1.0
  Automat==22.10.0 attrs==21.4.0 hyperlink==21.0.0 idna==2.10 typing==3.10.0.0
  PyHamcrest==1.10.1 pyOpenSSL==19.1.0 cryptography==3.3.2 cffi==1.15.1
  pycparser==2.21 enum34==1.1.10 ipaddress==1.0.23 six==1.16.0
  service-identity==18.1.0 pyasn1==0.5.1 pyasn1-modules==0.3.0
  Jinja2==2.11.3 MarkupSafe==1.1.1 Werkzeug==1.0.1 klein==17.10.0
  unittest2==1.1.0 traceback2==1.4.0 linecache2==1.0.0
  wsaccel==0.6.6 ujson==2.0.3
)
# The marker records exactly what was installed; changing PINS forces a reinstall.
MARKER="$VENV/.wsecho-installed"
WANT_MARKER="$(printf '%s\n' "${PINS[@]}")"

wstest_works() {
  [ -x "$WSTEST" ] || return 1
  [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$WANT_MARKER" ] || return 1
  # Importing the fuzzing modules pulls in twisted, autobahn, wsaccel, etc.
  "$VENV/bin/python" -c 'import autobahntestsuite.fuzzing, autobahn.twisted.websocket, twisted.internet.reactor' \
    >/dev/null 2>&1 || return 1
  "$WSTEST" --help >/dev/null 2>&1 || return 1
}

find_py27() {
  if [ -n "${WSECHO_PY27:-}" ]; then
    [ -x "$WSECHO_PY27" ] || die "WSECHO_PY27=$WSECHO_PY27 is not executable"
    echo "$WSECHO_PY27"; return
  fi
  local root=""
  if command -v pyenv >/dev/null 2>&1; then root="$(pyenv root 2>/dev/null || true)"; fi
  [ -n "$root" ] || root="${PYENV_ROOT:-$HOME/.pyenv}"
  local cand
  for cand in "$root"/versions/2.7.18/bin/python2.7 "$root"/versions/2.7*/bin/python2.7; do
    if [ -x "$cand" ]; then echo "$cand"; return; fi
  done
  if command -v python2.7 >/dev/null 2>&1; then command -v python2.7; return; fi
  die "no Python 2.7 interpreter found. The Autobahn TestSuite needs CPython 2.7.
  Looked for: \$WSECHO_PY27, $root/versions/2.7*/bin/python2.7, python2.7 on PATH.
  Install one with e.g. 'pyenv install 2.7.18' (needs build deps: gcc, libssl-dev,
  zlib1g-dev, libffi-dev, libbz2-dev, libreadline-dev, libsqlite3-dev), or point
  WSECHO_PY27 at an existing python2.7."
}

install() {
  command -v python3 >/dev/null 2>&1 || die "python3 is required (to run virtualenv $VIRTUALENV_VERSION)"
  command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 \
    || die "a C compiler (gcc) is required to build wsaccel/ujson/cffi for Python 2.7 (apt-get install build-essential)"
  local py27
  py27="$(find_py27)"
  "$py27" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null \
    || die "$py27 is not a working Python 2.7"
  "$py27" -c 'import ssl, zlib, ctypes' 2>/dev/null \
    || die "$py27 lacks the ssl/zlib/ctypes modules (rebuild it with libssl-dev, zlib1g-dev, libffi-dev)"
  log "using Python 2.7 at $py27"

  if ! PYTHONPATH="$VIRTUALENV_DIR" python3 -c 'import virtualenv' >/dev/null 2>&1; then
    log "installing virtualenv==$VIRTUALENV_VERSION into $VIRTUALENV_DIR"
    rm -rf "$VIRTUALENV_DIR"
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-input \
      --target "$VIRTUALENV_DIR" "virtualenv==$VIRTUALENV_VERSION" >&2 \
      || die "pip install virtualenv==$VIRTUALENV_VERSION failed"
  fi

  log "creating Python 2.7 virtualenv at $VENV"
  rm -rf "$VENV"
  # --no-download: use virtualenv's bundled pip/setuptools/wheel (py2.7-compatible versions).
  PYTHONPATH="$VIRTUALENV_DIR" python3 -m virtualenv --quiet --no-download -p "$py27" "$VENV" >&2 \
    || die "virtualenv failed to create a Python 2.7 env at $VENV"

  log "installing autobahntestsuite and its pinned dependencies (about a minute)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-python-version-warning --no-input \
    --no-deps "${PINS[@]}" >&2 \
    || die "pip install of the pinned Autobahn TestSuite packages failed (see output above)"

  printf '%s\n' "${PINS[@]}" > "$MARKER"
  wstest_works || die "installation finished but $WSTEST does not work; try:
  $WSTEST --help"
}

mkdir -p "$CACHE"
# Serialise concurrent setups sharing the same cache.
exec 9>"$CACHE/.autobahn-setup.lock"
flock 9 2>/dev/null || true

if wstest_works; then
  log "wstest already installed"
else
  start=$SECONDS
  install
  log "installed in $((SECONDS - start)) s"
fi

echo "$WSTEST"
