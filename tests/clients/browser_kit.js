// browser_kit.js - what the headless-Chromium check scripts share (the ones
// in tests/browser/ and tests/clients/): Chromium started the same way with a
// fresh profile that is removed again, bounded waits, commands with a time
// limit, mosquitto_pub, and the result protocol: one JSON line on stdout, the
// last one, and exit 0 (passed) / 1 (failed or the overall cap reached).
// It sits beside tests/clients/package.json so playwright-core resolves from
// tests/clients/node_modules whoever requires it. Each script keeps its own
// steps and checks; this holds none.

'use strict';

const { execFile } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.WSGATE_CHROMIUM || '/usr/bin/chromium';
// Nothing a test does not ask for: no QUIC, no background traffic or updates.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update',
  '--disable-sync'];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function check(cond, what, detail) {
  if (!cond) throw new Error(what + (detail === undefined ? '' : ': ' + JSON.stringify(detail)));
}

// Polls fn() until it returns an object with `done` (returned). Ends early by
// throwing when guard() throws, or fn() does, or fn() returns {fail: why}.
// Otherwise throws naming `what` and the last value after timeoutMs.
async function waitFor(what, fn, { timeoutMs, pollMs, guard }) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    if (guard) guard(what);
    last = await fn();
    if (last && last.done) return last;
    if (last && last.fail) throw new Error(what + ': ' + last.fail);
    await sleep(pollMs);
  }
  throw new Error('timed out after ' + timeoutMs + ' ms waiting for ' + what + ' (last: ' + JSON.stringify(last) + ')');
}

// Runs cmd with a time limit (default 5 s); never rejects: the exit status
// (-1 when there is none, e.g. killed), its output and the error, if any.
function run(cmd, args, timeoutMs) {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs || 5000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code === undefined ? -1 : err.code) : 0, stdout, stderr, error: err ? String(err) : null });
    });
  });
}

// One QoS 1 message to the broker on 127.0.0.1:port, as another client would send it.
async function mqttPub(port, topic, message) {
  const r = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-q', '1', '-t', topic, '-m', message]);
  check(r.code === 0, 'mosquitto_pub ' + topic, r);
}

// One run of a check script: `info` is the result object printed at the end;
// it gets ok/error here on failure, the script sets ok (and whatever else it
// reports) on success. name is the script's, for the overall-cap message.
class CheckRun {
  constructor(name, info, { overallMs, waitMs, pollMs, guard }) {
    this.name = name;
    this.info = info;
    this.overallMs = overallMs;
    this.waitMs = waitMs;
    this.pollMs = pollMs || 100;
    this.guard = guard || null;
    this.t0 = Date.now();
    this.context = null; // the browser or persistent context, closed by finish()
    this.userDataDir = null;
    this.ownUserDataDir = false; // made here, so removed by finish()
    this.finished = false;
  }

  step(s, extra) {
    this.info.steps.push(Object.assign({ step: s, ms: Date.now() - this.t0 }, extra || {}));
  }

  // waitFor with this run's default wait, poll interval and guard.
  waitFor(what, fn, timeoutMs) {
    return waitFor(what, fn, { timeoutMs: timeoutMs || this.waitMs, pollMs: this.pollMs, guard: this.guard });
  }

  // Chromium with a fresh persistent profile: the directory named by
  // WSGATE_CHROMIUM_PROFILE when profileFromEnv (the caller removes it), else
  // a new temporary one removed by finish(). options go to playwright
  // (viewport, colorScheme); args default to CHROMIUM_ARGS.
  async launchPersistent({ profileFromEnv, args, ...options }) {
    if (profileFromEnv && process.env.WSGATE_CHROMIUM_PROFILE) {
      this.userDataDir = process.env.WSGATE_CHROMIUM_PROFILE;
      fs.mkdirSync(this.userDataDir, { recursive: true });
    } else {
      this.userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
      this.ownUserDataDir = true;
    }
    this.context = await chromium.launchPersistentContext(this.userDataDir, Object.assign({
      executablePath: CHROMIUM, headless: true, args: args || CHROMIUM_ARGS, timeout: 20000,
    }, options));
    return this.context;
  }

  // Chromium without a profile directory, for scripts that make one
  // browser context per case.
  async launch() {
    this.context = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    return this.context;
  }

  // Closes the browser now, for a script that ends it itself: unlike in
  // finish(), a failure to close is thrown to the caller.
  async closeBrowser() {
    const c = this.context;
    this.context = null;
    if (c) await c.close();
  }

  // The page's default timeout is the run's wait; what goes wrong in it is
  // recorded in info: console (first 50 lines), page_errors, and with
  // requests failed_requests (failed or HTTP >= 400), with websockets
  // info.websockets (each URL through websockets(url)).
  watchPage(page, { requests, websockets } = {}) {
    const info = this.info;
    page.setDefaultTimeout(this.waitMs);
    page.on('console', (m) => { if (info.console.length < 50) info.console.push(m.type() + ': ' + m.text()); });
    page.on('pageerror', (e) => info.page_errors.push(String(e && e.stack || e)));
    if (requests) {
      page.on('requestfailed', (r) => info.failed_requests.push(r.url() + ': ' + (r.failure() || {}).errorText));
      page.on('response', (r) => { if (r.status() >= 400) info.failed_requests.push(r.url() + ': HTTP ' + r.status()); });
    }
    if (websockets) page.on('websocket', (w) => info.websockets.push(websockets(w.url())));
  }

  // Closes the browser (at most 5 s), removes a profile made here, prints
  // info as the last line and exits with code. Only the first call counts.
  async finish(code) {
    if (this.finished) return;
    this.finished = true;
    if (this.context) {
      const c = this.context;
      this.context = null;
      await Promise.race([c.close().catch(() => {}), sleep(5000)]);
    }
    if (this.userDataDir && this.ownUserDataDir) {
      try { fs.rmSync(this.userDataDir, { recursive: true, force: true }); } catch (e) { /* best effort */ }
    }
    process.stdout.write(JSON.stringify(this.info) + '\n', () => process.exit(code));
  }

  // Runs main() under the overall cap and finishes: 0 when it resolves, 1
  // when it throws (after onFail(err), which may add to info while the page
  // is still there) or when the cap is reached first.
  start(main, onFail) {
    const info = this.info;
    const hardStop = setTimeout(() => {
      info.ok = false;
      info.error = this.name + ': overall time limit of ' + this.overallMs + ' ms reached';
      this.finish(1);
    }, this.overallMs);
    hardStop.unref();
    main().then(() => this.finish(0)).catch(async (err) => {
      info.ok = false;
      info.error = err && err.message || String(err);
      if (onFail) {
        try { await onFail(err); } catch (e) { /* already failing */ }
      }
      this.finish(1);
    });
  }
}

module.exports = { chromium, CHROMIUM, CHROMIUM_ARGS, sleep, check, waitFor, run, mqttPub, CheckRun };
