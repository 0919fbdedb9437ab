#!/usr/bin/env node
// novnc_check.js - opens the noVNC test page (tests/clients/novnc/index.html,
// served by wsgate) in headless Chromium through playwright-core and checks
// that noVNC's RFB client gets a real VNC desktop through the gateway.
//
//   node novnc_check.js PAGE_URL X_DISPLAY SCREENSHOT_PNG
//
// e.g. node novnc_check.js 'http://127.0.0.1:8080/index.html?path=/vnc' :5 out.png
//
// The X display must show a solid red root window when this starts. Steps:
//  1. RFB fires `connect` (RFB handshake done through the gateway) and the
//     WebSocket's selected subprotocol is read.
//  2. The canvas reaches the framebuffer size and at least 95% of its pixels
//     are red: the first framebuffer update was drawn.
//  3. `xsetroot -solid blue` on the X display; the canvas must turn blue:
//     incremental updates flow while the connection stays open.
//  4. A screenshot of the page goes to SCREENSHOT_PNG.
//  5. rfb.disconnect(): the `disconnect` event must say clean.
// Prints one JSON line on stdout ({"ok": true, ...} or {"ok": false,
// "error": ..., plus what the page reported}) and exits 0 / 1 (2: bad usage).
// Every wait has a time limit and the whole run is capped, so this never hangs.
// Environment: WSGATE_CHROMIUM (default /usr/bin/chromium); WSGATE_CHROMIUM_PROFILE,
// an empty directory for the fresh browser profile (default: a new temporary one).

'use strict';

const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.WSGATE_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync'];
const WAIT_MS = 10000;
const OVERALL_MS = 45000;
const RED = [255, 0, 0];
const BLUE = [0, 0, 255];
const MIN_MATCH = 0.95;

if (process.argv.length !== 5) {
  process.stderr.write('usage: novnc_check.js PAGE_URL X_DISPLAY SCREENSHOT_PNG\n');
  process.exit(2);
}
const [pageUrl, xDisplay, screenshotPath] = process.argv.slice(2);

const info = { page_url: pageUrl, steps: [], console: [], page_errors: [], failed_requests: [] };
const t0 = Date.now();
const step = (s, extra) => info.steps.push(Object.assign({ step: s, ms: Date.now() - t0 }, extra || {}));
let context = null;
let userDataDir = null;
let finished = false;

let ownUserDataDir = false; // made here (removed at the end), or given in WSGATE_CHROMIUM_PROFILE

function cleanupDir() {
  if (userDataDir && ownUserDataDir) {
    try { fs.rmSync(userDataDir, { recursive: true, force: true }); } catch (e) { /* best effort */ }
    userDataDir = null;
  }
}

async function finish(code) {
  if (finished) return;
  finished = true;
  if (context) {
    const c = context;
    context = null;
    await Promise.race([c.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  }
  cleanupDir();
  process.stdout.write(JSON.stringify(info) + '\n', () => process.exit(code));
}

async function pageState(page) {
  try {
    return await page.evaluate(() => window.vncTest || null, null, { timeout: 3000 });
  } catch (e) {
    return { evaluate_error: e.message };
  }
}

// Polls fn(page) until it returns a truthy value; throws with `what` on timeout.
async function waitFor(page, what, fn, timeoutMs) {
  const deadline = Date.now() + (timeoutMs || WAIT_MS);
  let last;
  while (Date.now() < deadline) {
    last = await fn(page);
    if (last && last.done) return last;
    if (last && last.fail) throw new Error(what + ': ' + last.fail);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('timed out after ' + (timeoutMs || WAIT_MS) + ' ms waiting for ' + what +
                  ' (last: ' + JSON.stringify(last) + ')');
}

async function waitColour(page, name, rgb) {
  return waitFor(page, 'the canvas to show ' + name, async (p) => {
    const st = await p.evaluate((c) => window.vncCanvasStats(c), rgb, { timeout: 3000 });
    const state = await pageState(p);
    if (state && state.disconnected) return { fail: 'RFB disconnected: ' + JSON.stringify(state.events) };
    if (st && st.total && st.match / st.total >= MIN_MATCH) return Object.assign({ done: true }, st);
    return st;
  });
}

async function main() {
  // A fresh profile: the caller's empty directory, or a new temporary one.
  if (process.env.WSGATE_CHROMIUM_PROFILE) {
    userDataDir = process.env.WSGATE_CHROMIUM_PROFILE;
    fs.mkdirSync(userDataDir, { recursive: true });
  } else {
    userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
    ownUserDataDir = true;
  }
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 20000,
    viewport: { width: 480, height: 270 },
  });
  step('chromium started', { version: context.browser() ? context.browser().version() : null });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('console', (m) => { if (info.console.length < 50) info.console.push(m.type() + ': ' + m.text()); });
  page.on('pageerror', (e) => info.page_errors.push(String(e && e.stack || e)));
  page.on('requestfailed', (r) => info.failed_requests.push(r.url() + ': ' + (r.failure() || {}).errorText));
  page.on('response', (r) => { if (r.status() >= 400) info.failed_requests.push(r.url() + ': HTTP ' + r.status()); });

  const resp = await page.goto(pageUrl, { waitUntil: 'load', timeout: WAIT_MS });
  info.page_status = resp ? resp.status() : null;
  if (!resp || resp.status() !== 200) throw new Error('page load: HTTP ' + info.page_status);
  step('page loaded');

  await waitFor(page, 'RFB connect', async (p) => {
    const s = await pageState(p);
    if (info.page_errors.length) return { fail: 'page error: ' + info.page_errors[0] };
    if (s && s.error) return { fail: 'page script: ' + s.error };
    if (s && s.disconnected) return { fail: 'disconnected before connect: ' + JSON.stringify(s.events) };
    if (s && s.connected) return Object.assign({ done: true }, s);
    return s;
  });
  const s1 = await pageState(page);
  info.subprotocol = s1.subprotocol;
  info.offered = s1.offered;
  info.ws_url = s1.wsUrl;
  step('RFB connected');

  info.red = await waitColour(page, 'red', RED);
  step('first framebuffer drawn (red)');
  const s2 = await pageState(page);
  info.desktop_name = s2.desktopName;

  execFileSync('xsetroot', ['-display', xDisplay, '-solid', 'blue'], { timeout: 5000, stdio: 'ignore' });
  step('xsetroot -solid blue');
  info.blue = await waitColour(page, 'blue', BLUE);
  step('update drawn (blue)');

  fs.mkdirSync(path.dirname(screenshotPath), { recursive: true });
  await page.screenshot({ path: screenshotPath, timeout: WAIT_MS });
  info.screenshot = screenshotPath;
  step('screenshot saved');

  await page.evaluate(() => window.rfb.disconnect(), null, { timeout: 3000 });
  await waitFor(page, 'RFB disconnect', async (p) => {
    const s = await pageState(p);
    if (s && s.disconnected) return Object.assign({ done: true }, s);
    return s;
  });
  const s3 = await pageState(page);
  info.clean_disconnect = s3.clean;
  info.events = s3.events;
  step('disconnected');
  info.ok = true;
  info.elapsed_ms = Date.now() - t0;
}

const hardStop = setTimeout(() => {
  info.ok = false;
  info.error = 'novnc_check.js: overall time limit of ' + OVERALL_MS + ' ms reached';
  finish(1);
}, OVERALL_MS);
hardStop.unref();

main().then(() => finish(0)).catch(async (err) => {
  info.ok = false;
  info.error = err && err.message || String(err);
  try {
    if (context) {
      const page = context.pages()[0];
      if (page) {
        info.page_state = await pageState(page);
        if (screenshotPath) {
          await page.screenshot({ path: screenshotPath, timeout: 3000 }).catch(() => {});
        }
      }
    }
  } catch (e) { /* already failing */ }
  finish(1);
});
