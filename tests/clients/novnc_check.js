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
const path = require('path');
const kit = require('./browser_kit.js');

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
const R = new kit.CheckRun('novnc_check.js', info, { overallMs: OVERALL_MS, waitMs: WAIT_MS, pollMs: 100 });
const t0 = R.t0;
const step = (s, extra) => R.step(s, extra);

async function pageState(page) {
  try {
    return await page.evaluate(() => window.vncTest || null, null, { timeout: 3000 });
  } catch (e) {
    return { evaluate_error: e.message };
  }
}

// Polls fn(page) until it returns {done}; {fail: why} ends the wait at once.
const waitFor = (page, what, fn, timeoutMs) => R.waitFor(what, () => fn(page), timeoutMs);

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
  const context = await R.launchPersistent({ profileFromEnv: true, viewport: { width: 480, height: 270 } });
  step('chromium started', { version: context.browser() ? context.browser().version() : null });
  const page = context.pages()[0] || await context.newPage();
  R.watchPage(page, { requests: true });

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

R.start(main, async () => {
  const page = R.context && R.context.pages()[0];
  if (page) {
    info.page_state = await pageState(page);
    if (screenshotPath) {
      await page.screenshot({ path: screenshotPath, timeout: 3000 }).catch(() => {});
    }
  }
});
