#!/usr/bin/env node
// deflate_check.js - Chromium against a route with "compression": true and one
// without: the browser offers permessage-deflate on every WebSocket (as all
// browsers do); it must be negotiated on the first only, and JSON messages must
// come back intact both ways. Run by tests/browser/test_compression_browser.py.
//
//   node deflate_check.js '{"compressed": WS_URL, "plain": WS_URL, "count": N}'
//
// Prints one JSON line ({"ok": true, "compressed": {...}, "plain": {...}} or
// {"ok": false, "error": ...}) and exits 0 / 1. Environment: WSGATE_CHROMIUM
// (default /usr/bin/chromium), WSGATE_CHROMIUM_PROFILE (an empty directory).

'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { createRequire } = require('module');

const clientsRequire = createRequire(path.join(__dirname, '..', 'clients', 'package.json'));
const { chromium } = clientsRequire('playwright-core');

const CHROMIUM = process.env.WSGATE_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function main() {
  const opts = JSON.parse(process.argv[2] || '{}');
  const profile = process.env.WSGATE_CHROMIUM_PROFILE ||
    fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
  fs.mkdirSync(profile, { recursive: true });
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: ARGS, timeout: 20000,
  });
  try {
    const page = context.pages()[0] || await context.newPage();
    const result = await page.evaluate(async ({ urls, count }) => {
      function run(url) {
        return new Promise((resolve, reject) => {
          const ws = new WebSocket(url);
          const sent = [];
          const got = [];
          const timer = setTimeout(() => reject(new Error('timeout on ' + url)), 15000);
          ws.onopen = () => {
            for (let i = 0; i < count; i++) {
              const m = JSON.stringify({ seq: i, sensor: 'hall-' + (i % 4), temp: 20 + (i % 7) / 10,
                status: 'ok', tags: ['building-a', 'floor-2'] });
              sent.push(m);
              ws.send(m);
            }
          };
          ws.onmessage = (e) => {
            got.push(e.data);
            if (got.length === count) {
              clearTimeout(timer);
              const extensions = ws.extensions;
              ws.onclose = (c) => resolve({ extensions, same: JSON.stringify(got) === JSON.stringify(sent),
                code: c.code, messages: got.length });
              ws.close(1000);
            }
          };
          ws.onerror = () => { clearTimeout(timer); reject(new Error('error on ' + url)); };
        });
      }
      return { compressed: await run(urls.compressed), plain: await run(urls.plain) };
    }, { urls: { compressed: opts.compressed, plain: opts.plain }, count: opts.count || 100 });
    console.log(JSON.stringify(Object.assign({ ok: true }, result)));
    return 0;
  } finally {
    await context.close();
  }
}

main().then((rc) => process.exit(rc), (e) => {
  console.log(JSON.stringify({ ok: false, error: String(e && e.stack || e) }));
  process.exit(1);
});
