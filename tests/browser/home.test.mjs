// End-to-end test of the wsecho home page in a real (headless) Chromium.
//
// Usage: WSECHO_URL=http://127.0.0.1:PORT node home.test.mjs
// (run.sh does the setup: chromium, npm ci, build, start the server.)
//
// Exit status 0 when every check passed, 1 on a failed check, 2 on a setup
// error or the overall time limit.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const OUT_DIR = path.join(HERE, 'out');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TOTAL_TIMEOUT_MS = 55_000; // whole test, including browser start-up
const STEP_TIMEOUT_MS = 10_000; // any single wait in the page
const N_CONNS = 200;
const N_MSGS = 50;

const BASE = (process.env.WSECHO_URL || '').replace(/\/+$/, '');
/** https:// page: the page must open wss:// (browsers refuse ws:// from https). */
const TLS = BASE.startsWith('https:');
if (!BASE) {
  console.error('browser-e2e: WSECHO_URL is not set (e.g. http://127.0.0.1:8080)');
  process.exit(2);
}

let passed = 0;
class CheckFailed extends Error {}

function check(cond, what, detail) {
  if (!cond) {
    const extra = detail === undefined ? '' : `\n  ${detail}`;
    throw new CheckFailed(`check failed: ${what}${extra}`);
  }
  passed++;
}

// Short, readable rendering of possibly huge strings for failure messages.
function show(s) {
  if (typeof s !== 'string') return JSON.stringify(s);
  return s.length > 120 ? `${JSON.stringify(s.slice(0, 100))}... (${s.length} chars)` : JSON.stringify(s);
}

function firstDiff(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

const watchdog = setTimeout(() => {
  console.error(`browser-e2e: FAILED: overall time limit of ${TOTAL_TIMEOUT_MS / 1000} s exceeded ` +
    `(${passed} checks had passed)`);
  process.exit(2);
}, TOTAL_TIMEOUT_MS);

// Installed before any page script: wraps WebSocket so the test can see how
// many sockets the page created and how each one closed.
function instrumentWebSocket() {
  const Native = window.WebSocket;
  window.__wsCreated = 0;
  window.__wsCloses = [];
  window.__wsExtensions = [];
  window.__wsUrls = [];
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      window.__wsCreated++;
      window.__wsUrls.push(this.url);
      this.addEventListener('open', () => window.__wsExtensions.push(this.extensions));
      this.addEventListener('close', (e) => {
        window.__wsCloses.push({ code: e.code, reason: e.reason, wasClean: e.wasClean });
      });
    }
  };
}

async function main() {
  fs.mkdirSync(OUT_DIR, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsecho-chromium-'));
  const problems = []; // console errors and page errors

  // playwright-core insists on launchPersistentContext when a profile
  // directory is wanted (it refuses --user-data-dir in args); it also adds
  // --headless itself for headless: true.
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 20_000,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      // Issue 13: over https the server shows a throw-away self-signed
      // certificate (--tls-self-signed); trust it for this test only.
      ...(TLS ? ['--ignore-certificate-errors'] : []),
    ],
    ignoreHTTPSErrors: TLS,
    viewport: { width: 1000, height: 640 },
  });
  try {
    context.setDefaultTimeout(STEP_TIMEOUT_MS);
    await context.addInitScript(instrumentWebSocket);
    const page = context.pages()[0] || (await context.newPage());
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console error: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    const noProblems = (when) =>
      check(problems.length === 0, `no console/page errors ${when}`, problems.join('\n  '));

    const lines = () => page.$$eval('#output > *', (els) => els.map((e) => e.textContent));
    const waitLines = (n) =>
      page.waitForFunction((n) => document.querySelectorAll('#output > *').length >= n, n, {
        timeout: STEP_TIMEOUT_MS,
      }).catch(async (e) => {
        const got = await lines();
        throw new CheckFailed(`timed out waiting for output line ${n} ` +
          `(have ${got.length}: ${got.slice(-4).map(show).join(', ')}): ${e.message.split('\n')[0]}`);
      });
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

    // --- load the page -------------------------------------------------------
    const resp = await page.goto(`${BASE}/`, { waitUntil: 'load' });
    check(resp && resp.status() === 200, 'GET / returns 200', `status ${resp && resp.status()}`);
    const ctype = (resp.headers()['content-type'] || '').toLowerCase();
    check(ctype.startsWith('text/html'), 'GET / is text/html', `content-type ${show(ctype)}`);
    for (const id of ['open', 'close', 'send', 'input', 'output']) {
      check(await page.locator(`#${id}`).count() === 1, `page has exactly one #${id}`);
    }
    check(await page.inputValue('#input') === 'Hello world!', 'default input is "Hello world!"',
      show(await page.inputValue('#input')));
    check((await lines()).length === 0, 'output starts empty', show(await lines()));

    // --- Send while closed: no socket, no SEND line --------------------------
    await page.click('#send');
    await sleep(150);
    let out = await lines();
    check(out.every((l) => l.startsWith('ERROR: ')), 'Send while closed only logs ERROR (if anything)',
      out.map(show).join(', '));
    check(await page.evaluate(() => window.__wsCreated) === 0, 'Send while closed creates no socket');
    let base = out.length;

    // --- open ------------------------------------------------------------------
    await page.click('#open');
    await waitLines(base + 1);
    out = await lines();
    check(out[base] === 'OPEN', 'first line after Open is OPEN', show(out[base]));
    base++;
    await page.click('#open'); // already open: must do nothing
    await sleep(200);
    check(await page.evaluate(() => window.__wsCreated) === 1, 'Open while open creates no 2nd socket');
    check((await lines()).length === base, 'Open while open prints nothing', show((await lines()).slice(base)));
    // The server compresses by default and Chromium offers permessage-deflate,
    // so everything below runs compressed (WSECHO_EXPECT_COMPRESSION=0 for a
    // server started with --compression off).
    const urls = await page.evaluate(() => window.__wsUrls);
    const scheme = TLS ? 'wss:' : 'ws:';
    check(urls.length > 0 && urls.every((u) => u.startsWith(scheme)), `the page opens ${scheme}// sockets`,
      urls.join(', '));
    const exts = await page.evaluate(() => window.__wsExtensions);
    if (process.env.WSECHO_EXPECT_COMPRESSION !== '0') {
      check(String(exts[0] || '').startsWith('permessage-deflate'), 'Chromium negotiated permessage-deflate',
        JSON.stringify(exts));
    } else {
      check(exts[0] === '', 'no extension negotiated', JSON.stringify(exts));
    }

    // --- echo: default, Unicode, 70,000 chars, HTML-looking -------------------
    async function echo(text, label) {
      if (text !== null) await page.fill('#input', text);
      const sent = await page.inputValue('#input');
      await page.click('#send');
      await waitLines(base + 2);
      const got = (await lines()).slice(base, base + 2);
      check(got[0] === `SEND: ${sent}`, `${label}: SEND line exact`, `got ${show(got[0])}`);
      const want = `RESPONSE: ${sent}`;
      check(got[1] === want, `${label}: RESPONSE line exact and after SEND`,
        `got ${show(got[1])}, want ${show(want)}, first difference at index ${firstDiff(got[1] || '', want)}`);
      base += 2;
    }
    await echo(null, 'default text');
    await echo('héllo 世界 🚀', 'unicode text');
    const big = Array.from({ length: 70_000 }, (_, i) => String.fromCharCode(97 + ((i * 7) % 26))).join('');
    await echo(big, '70,000-char text');
    const html = '<img src=x onerror="window.__xss=1"><b>bold</b>';
    await echo(html, 'HTML-looking text');
    check(await page.evaluate(() => document.querySelectorAll('#output img, #output b').length) === 0,
      'echoed HTML is inserted as text, not markup');
    check(await page.evaluate(() => window.__xss === undefined), 'echoed HTML does not run script');

    // --- close -----------------------------------------------------------------
    await page.click('#close');
    await waitLines(base + 1);
    out = await lines();
    check(out[base] === 'CLOSE', 'Close prints CLOSE', show(out[base]));
    base++;
    let closes = await page.evaluate(() => window.__wsCloses);
    check(closes.length === 1, 'one socket closed', JSON.stringify(closes));
    check(closes[0].wasClean === true && closes[0].code === 1000, 'close was clean with code 1000',
      JSON.stringify(closes[0]));

    // --- reopen and echo again ------------------------------------------------
    await page.click('#open');
    await waitLines(base + 1);
    out = await lines();
    check(out[base] === 'OPEN', 'reopen prints OPEN', show(out[base]));
    base++;
    await echo('again, after reopening', 'echo after reopen');
    await page.fill('#input', 'Hello world!');
    noProblems('after the page flow');

    // --- 200 concurrent sockets from the page, 50 messages each -------------
    const wsUrl = BASE.replace(/^http/, 'ws') + '/echo';
    const t0 = Date.now();
    const results = await page.evaluate(async ({ wsUrl, nConns, nMsgs, timeoutMs }) => {
      const one = (i) => new Promise((resolve) => {
        const got = [];
        const ws = new WebSocket(wsUrl);
        const timer = setTimeout(() => {
          resolve({ i, error: `timeout, readyState ${ws.readyState}, ${got.length} echoes`, got });
          try { ws.close(); } catch (_) { /* ignore */ }
        }, timeoutMs);
        ws.onopen = () => {
          for (let j = 0; j < nMsgs; j++) ws.send(`c${i}-m${j}`);
        };
        ws.onmessage = (e) => {
          got.push(e.data);
          if (got.length === nMsgs) ws.close(1000, 'done');
        };
        ws.onclose = (e) => {
          clearTimeout(timer);
          resolve({ i, got, code: e.code, wasClean: e.wasClean });
        };
      });
      return Promise.all(Array.from({ length: nConns }, (_, i) => one(i)));
    }, { wsUrl, nConns: N_CONNS, nMsgs: N_MSGS, timeoutMs: 25_000 });
    const ms = Date.now() - t0;

    check(results.length === N_CONNS, `${N_CONNS} socket results`);
    const bad = [];
    for (const r of results) {
      const want = Array.from({ length: N_MSGS }, (_, j) => `c${r.i}-m${j}`);
      if (r.error) bad.push(`socket ${r.i}: ${r.error}`);
      else if (r.got.length !== N_MSGS || r.got.some((m, j) => m !== want[j])) {
        const k = firstDiff(r.got, want);
        bad.push(`socket ${r.i}: echo ${k} is ${show(r.got[k])}, want ${show(want[k])} (${r.got.length} echoes)`);
      } else if (!(r.wasClean && r.code === 1000)) {
        bad.push(`socket ${r.i}: close not clean: code ${r.code}, wasClean ${r.wasClean}`);
      }
    }
    check(bad.length === 0,
      `all ${N_CONNS}x${N_MSGS} echoes exact and in order, every socket closed cleanly with 1000`,
      `${bad.length} bad sockets, e.g.:\n  ${bad.slice(0, 5).join('\n  ')}`);
    console.log(`browser-e2e: ${N_CONNS} sockets x ${N_MSGS} messages echoed in ${ms} ms`);

    // --- finish: close the page's socket, screenshot ---------------------------
    await page.click('#close');
    await waitLines(base + 1);
    check((await lines())[base] === 'CLOSE', 'final Close prints CLOSE');
    closes = await page.evaluate(() => window.__wsCloses);
    const last = closes[closes.length - 1];
    check(last && last.wasClean && last.code === 1000, 'final close clean with 1000', JSON.stringify(last));
    await page.screenshot({ path: path.join(OUT_DIR, 'home.png') });
    noProblems('at the end');
  } finally {
    await Promise.race([context.close().catch(() => {}), new Promise((r) => setTimeout(r, 5_000))]);
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
}

try {
  await main();
  clearTimeout(watchdog);
  console.log(`browser-e2e: ${passed} passed, 0 failed`);
  process.exit(0);
} catch (e) {
  clearTimeout(watchdog);
  if (e instanceof CheckFailed) {
    console.error(`browser-e2e: FAILED: ${e.message}`);
    console.log(`browser-e2e: ${passed} passed, 1 failed`);
    process.exit(1);
  }
  console.error(`browser-e2e: ERROR: ${e && e.stack || e}`);
  console.log(`browser-e2e: ${passed} passed, 1 failed`);
  process.exit(2);
}
