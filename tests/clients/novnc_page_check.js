#!/usr/bin/env node
// novnc_page_check.js - opens noVNC's own page, unmodified (Debian's novnc
// package, /usr/share/novnc/vnc.html, served by `wsgate --web`), in headless
// Chromium through playwright-core, and checks that it shows the remote
// desktop through the gateway, as a user of novnc_proxy + websockify sees it.
//
//   node novnc_page_check.js PAGE_URL X_DISPLAY SCREENSHOT_PNG
//
// e.g. node novnc_page_check.js \
//   'http://127.0.0.1:6080/vnc.html?autoconnect=true&host=127.0.0.1&port=6080' :5 out.png
//
// The X display must show a solid red root window when this starts. Steps:
//  1. the page's UI reaches its "connected" state (class noVNC_connected on
//     <html>, which ui.js sets on RFB's `connect` event);
//  2. its canvas is at least 95% red (the first framebuffer update);
//  3. `xsetroot -solid blue`; the canvas turns blue (updates keep flowing);
//  4. a screenshot goes to SCREENSHOT_PNG.
// The page's files are not touched: an init script only records each
// WebSocket the page opens (URL, selected subprotocol) so the result can say.
// Prints one JSON line ({"ok": true, ...} or {"ok": false, "error": ...}) and
// exits 0 / 1 (2: bad usage). Every wait is bounded.
// Environment: WSGATE_CHROMIUM (default /usr/bin/chromium).

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
const WAIT_MS = 15000;
const OVERALL_MS = 50000;
const RED = [255, 0, 0];
const BLUE = [0, 0, 255];
const MIN_MATCH = 0.95;

if (process.argv.length !== 5) {
  process.stderr.write('usage: novnc_page_check.js PAGE_URL X_DISPLAY SCREENSHOT_PNG\n');
  process.exit(2);
}
const [pageUrl, xDisplay, screenshotPath] = process.argv.slice(2);

const info = { page_url: pageUrl, steps: [], console: [], page_errors: [], failed_requests: [] };
const t0 = Date.now();
const step = (s, extra) => info.steps.push(Object.assign({ step: s, ms: Date.now() - t0 }, extra || {}));
let context = null;
let userDataDir = null;
let finished = false;

async function finish(code) {
  if (finished) return;
  finished = true;
  if (context) {
    const c = context;
    context = null;
    await Promise.race([c.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
  }
  if (userDataDir) {
    try { fs.rmSync(userDataDir, { recursive: true, force: true }); } catch (e) { /* best effort */ }
  }
  process.stdout.write(JSON.stringify(info) + '\n', () => process.exit(code));
}

// Runs in the page before its own scripts: remembers the WebSockets it opens.
function recordSockets() {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.WebSocket = function (url, protocols) {
    const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
    const rec = { url: String(url), offered: protocols || null, protocol: null, opened: false };
    window.__sockets.push(rec);
    ws.addEventListener('open', () => { rec.opened = true; rec.protocol = ws.protocol; });
    ws.addEventListener('close', (e) => { rec.close_code = e.code; rec.close_reason = e.reason; });
    return ws;
  };
  window.WebSocket.prototype = Native.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
}

// The page's state as its UI shows it, plus the canvas compared with rgb.
function pageState(rgb) {
  const html = document.documentElement.classList;
  const status = document.getElementById('noVNC_status');
  const st = {
    connected: html.contains('noVNC_connected'),
    disconnected: html.contains('noVNC_disconnected'),
    status: status ? status.textContent : null,
    sockets: window.__sockets || [],
  };
  const canvas = document.querySelector('#noVNC_container canvas');
  if (canvas && canvas.width > 0 && canvas.height > 0 && rgb) {
    const d = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
    let match = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - rgb[0]) < 16 && Math.abs(d[i + 1] - rgb[1]) < 16 &&
          Math.abs(d[i + 2] - rgb[2]) < 16) match++;
    }
    st.canvas = { width: canvas.width, height: canvas.height, total: d.length / 4, match };
  }
  return st;
}

async function waitFor(page, what, rgb, done) {
  const deadline = Date.now() + WAIT_MS;
  let last;
  while (Date.now() < deadline) {
    last = await page.evaluate(pageState, rgb, { timeout: 3000 }).catch((e) => ({ error: e.message }));
    if (info.page_errors.length) throw new Error(what + ': page error: ' + info.page_errors[0]);
    if (done(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('timed out after ' + WAIT_MS + ' ms waiting for ' + what + ' (last: ' +
                  JSON.stringify(last) + ')');
}

const colourDone = (s) => s && s.canvas && s.canvas.match / s.canvas.total >= MIN_MATCH;

async function main() {
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 20000,
    viewport: { width: 640, height: 480 },
  });
  step('chromium started');
  await context.addInitScript(recordSockets);
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

  const c = await waitFor(page, 'the page to connect', null, (s) => {
    if (s && s.disconnected && s.sockets.length && !s.connected)
      throw new Error('disconnected: ' + JSON.stringify(s));
    return s && s.connected;
  });
  info.sockets = c.sockets;
  info.status = c.status;
  step('connected');

  info.red = (await waitFor(page, 'the canvas to show red', RED, colourDone)).canvas;
  step('first framebuffer drawn (red)');
  execFileSync('xsetroot', ['-display', xDisplay, '-solid', 'blue'], { timeout: 5000, stdio: 'ignore' });
  info.blue = (await waitFor(page, 'the canvas to show blue', BLUE, colourDone)).canvas;
  step('update drawn (blue)');

  fs.mkdirSync(path.dirname(screenshotPath), { recursive: true });
  await page.screenshot({ path: screenshotPath, timeout: WAIT_MS });
  info.screenshot = screenshotPath;
  step('screenshot saved');
  info.ok = true;
  info.elapsed_ms = Date.now() - t0;
}

const hardStop = setTimeout(() => {
  info.ok = false;
  info.error = 'novnc_page_check.js: overall time limit of ' + OVERALL_MS + ' ms reached';
  finish(1);
}, OVERALL_MS);
hardStop.unref();

main().then(() => finish(0)).catch(async (err) => {
  info.ok = false;
  info.error = err && err.message || String(err);
  try {
    const page = context && context.pages()[0];
    if (page) {
      info.page_state = await page.evaluate(pageState, null, { timeout: 3000 }).catch(() => null);
      await page.screenshot({ path: screenshotPath, timeout: 3000 }).catch(() => {});
    }
  } catch (e) { /* already failing */ }
  finish(1);
});
