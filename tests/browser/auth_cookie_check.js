#!/usr/bin/env node
// auth_cookie_check.js - a site's cookie in front of wsgate, in headless
// Chromium through playwright-core: for each case a fresh browser context
// gets cookies on the gateway's origin (as a site's login would set them),
// loads a page from that origin, and opens a WebSocket from it; Chromium
// sends the cookies with the handshake by itself. Run by
// tests/browser/test_auth_cookie.py, which starts the gateway, the echo
// backend and the auth service.
//
//   node auth_cookie_check.js '{"page": URL, "cases": [{"name": N, "cookies":
//        [{"name": C, "value": V}], "path": "/x", "send": "text"}]}'
//
// Prints one JSON line {"ok": true, "results": {N: {"opened", "echo",
// "close_code", "close_reason"}}} (or {"ok": false, "error"}) and exits 0 / 1.

'use strict';

const path = require('path');
const { createRequire } = require('module');

const clientsRequire = createRequire(path.join(__dirname, '..', 'clients', 'package.json'));
const { chromium } = clientsRequire('playwright-core');

const CHROMIUM = process.env.WSGATE_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function main(opts) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const results = {};
  try {
    for (const c of opts.cases) {
      const context = await browser.newContext();
      await context.addCookies(c.cookies.map((k) => ({ name: k.name, value: k.value, url: opts.page })));
      const page = await context.newPage();
      await page.goto(opts.page, { timeout: 10000 });
      results[c.name] = await page.evaluate(({ wsPath, send }) => new Promise((resolve) => {
        const r = { opened: false, echo: null, close_code: null, close_reason: null };
        const ws = new WebSocket('ws://' + location.host + wsPath);
        const timer = setTimeout(() => { r.timeout = true; resolve(r); }, 8000);
        ws.onopen = () => { r.opened = true; if (send) ws.send(send); };
        ws.onmessage = (e) => { r.echo = String(e.data); ws.close(1000); };
        ws.onclose = (e) => {
          r.close_code = e.code;
          r.close_reason = e.reason;
          clearTimeout(timer);
          resolve(r);
        };
      }), { wsPath: c.path, send: c.send || null });
      await context.close();
    }
  } finally {
    await browser.close();
  }
  return results;
}

let opts;
try {
  opts = JSON.parse(process.argv[2] || '');
} catch (e) {
  process.stderr.write('usage: auth_cookie_check.js JSON: ' + e.message + '\n');
  process.exit(2);
}
const cap = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: 'overall time limit' }));
  process.exit(1);
}, 60000);
main(opts).then((results) => {
  clearTimeout(cap);
  console.log(JSON.stringify({ ok: true, results }));
  process.exit(0);
}, (e) => {
  clearTimeout(cap);
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) }));
  process.exit(1);
});
