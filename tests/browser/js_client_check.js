#!/usr/bin/env node
// js_client_check.js - wsgate-client.js (clients/js/, served by wsgate from
// www/) in headless Chromium against the real gateway and a real mosquitto.
// Run by tests/browser/test_js_client.py, which starts them and acts on this
// script's requests: it prints {"ask": WHAT, "n": N, ...} lines on stdout
// (stop_broker, start_broker, stop_gateway, start_gateway, token) and reads
// {"n": N, ...} replies on stdin.
//
//   node js_client_check.js '{"origin": "http://127.0.0.1:PORT", "scenario": S, "mqtt_port": N}'
//
// Scenarios:
//   basics: subscribe and publish acked, a message from mosquitto_pub arrives,
//     not_allowed / qos_not_allowed errors with the connection left open, then
//     mosquitto restarted: a publish made during the outage is acked after it,
//     and the subscription delivers again, with the WebSocket never closed.
//   gateway_restart: wsgate stopped and started again on the same port: close
//     and reconnecting events with growing delays, a publish past maxQueued
//     rejected at once ("dropped"), the queued ones acked and delivered after
//     the reconnect, both filters subscribed again, new messages arrive once.
//   token: a JWT route; token() asked for each connection; a short-lived
//     first token is refreshed before its exp ({"refresh"} acked, or refused
//     and then a reconnect with the new token): messages flow past the exp.
//   demo_page: the demo page (www/, on the client) connects its MQTT panel and
//     subscribes; wsgate restarted: the badge says reconnecting, then open, the
//     panel subscribes again, a message from mosquitto_pub arrives.
//   readme: opts.snippet (the README's five lines, host rewritten) run as a
//     module script in the page; what it prints to the console is returned.
//
// Prints one JSON line ({"ok": true, ...} or {"ok": false, "error": ...}) last
// and exits 0 / 1 (2: bad usage). Every wait is bounded.

'use strict';

const { execFile } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');
const { createRequire } = require('module');

const clientsRequire = createRequire(path.join(__dirname, '..', 'clients', 'package.json'));
const { chromium } = clientsRequire('playwright-core');

const CHROMIUM = process.env.WSGATE_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic',
  '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WAIT_MS = 10000;
const OVERALL_MS = 90000;

let opts;
try {
  opts = JSON.parse(process.argv[2] || '');
  if (!opts.origin || !['basics', 'gateway_restart', 'token', 'readme', 'demo_page'].includes(opts.scenario) || !opts.mqtt_port) {
    throw new Error('missing origin, scenario or mqtt_port');
  }
} catch (e) {
  process.stderr.write('usage: js_client_check.js \'{"origin": URL, "scenario": "basics"|"gateway_restart"|"token", "mqtt_port": N}\': ' + e.message + '\n');
  process.exit(2);
}

const info = { scenario: opts.scenario, steps: [], console: [], page_errors: [], websockets: [] };
const t0 = Date.now();
const step = (s, extra) => info.steps.push(Object.assign({ step: s, ms: Date.now() - t0 }, extra || {}));
let context = null;
let page = null;
let userDataDir = null;
let finished = false;

// ---------------------------------------------------------------------------
// asking the Python side

const replies = new Map();
let askSeq = 0;
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let j;
  try { j = JSON.parse(line); } catch (e) { return; }
  const r = replies.get(j.n);
  if (r) { replies.delete(j.n); r(j); }
});

function ask(what, extra) {
  const n = ++askSeq;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { replies.delete(n); reject(new Error('no answer to ask ' + what)); }, 40000);
    replies.set(n, (j) => {
      clearTimeout(timer);
      if (j.error) reject(new Error(what + ': ' + j.error)); else resolve(j);
    });
    process.stdout.write(JSON.stringify(Object.assign({ ask: what, n }, extra || {})) + '\n');
  });
}

// ---------------------------------------------------------------------------

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

function check(cond, what, detail) {
  if (!cond) throw new Error(what + (detail === undefined ? '' : ': ' + JSON.stringify(detail)));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitFor(what, fn, timeoutMs) {
  const limit = timeoutMs || WAIT_MS;
  const deadline = Date.now() + limit;
  let last;
  while (Date.now() < deadline) {
    if (info.page_errors.length) throw new Error('page error while waiting for ' + what + ': ' + info.page_errors[0]);
    last = await fn();
    if (last && last.done) return last;
    await sleep(50);
  }
  throw new Error('timed out after ' + limit + ' ms waiting for ' + what + ' (last: ' + JSON.stringify(last) + ')');
}

function run(cmd, args, timeoutMs) {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs || 5000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code === undefined ? -1 : err.code) : 0, stdout, stderr });
    });
  });
}

async function mqttPub(topic, message) {
  const r = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(opts.mqtt_port), '-q', '1', '-t', topic, '-m', message]);
  check(r.code === 0, 'mosquitto_pub ' + topic, r);
}

// In the page: the module imported from the gateway, and a recorder of every
// client event, message and promise outcome (window.T), read from here.
async function installRecorder() {
  await page.evaluate(async () => {
    const m = await import('/wsgate-client.js');
    const start = performance.now();
    const T = window.T = { m, clients: {}, events: [], got: [], results: {}, tokenCalls: 0 };
    T.now = () => Math.round(performance.now() - start);
    T.make = (name, path, options) => {
      const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + path;
      const c = new m.WsgateClient(url, options);
      T.clients[name] = c;
      const view = {
        error: (d) => ({ code: d.code, message: d.message }),
        resubscribed: (d) => ({ subscribed: d.subscribed, failed: d.failed.map((f) => f.filter) }),
        refresh: (d) => ({ ok: d.ok, code: d.error ? d.error.code : undefined }),
      };
      for (const type of ['open', 'close', 'reconnecting', 'resubscribed', 'refresh', 'error']) {
        c.on(type, (d) => T.events.push({ c: name, type, t: T.now(), d: view[type] ? view[type](d) : d }));
      }
      return c;
    };
    T.handler = (name) => (msg) => T.got.push({ c: name, topic: msg.topic, payload: msg.payload, t: T.now() });
    T.track = (key, promise) => {
      const r = T.results[key] = { state: 'pending', t: T.now() };
      promise.then(() => { r.state = 'ok'; r.ms = T.now() - r.t; },
        (e) => { r.state = 'rejected'; r.code = e.code; r.message = e.message; r.ms = T.now() - r.t; });
    };
  });
}

const pageT = (fn, arg) => page.evaluate(fn, arg);

async function result(key, timeoutMs) {
  const r = await waitFor('the outcome of ' + key, async () => {
    const x = await pageT((k) => window.T.results[k], key);
    return x && x.state !== 'pending' ? Object.assign({ done: true }, x) : x;
  }, timeoutMs);
  delete r.done;
  return r;
}

async function events(name, type) {
  return pageT(([n, ty]) => window.T.events.filter((e) => e.c === n && (!ty || e.type === ty)), [name, type]);
}

async function waitEvent(name, type, count, timeoutMs) {
  const r = await waitFor(count + ' "' + type + '" event(s) of ' + name, async () => {
    const ev = await events(name, type);
    return ev.length >= count ? { done: true, ev } : { seen: ev.length };
  }, timeoutMs);
  return r.ev;
}

async function received(name, pred) {
  const got = await pageT((n) => window.T.got.filter((g) => g.c === n), name);
  return got.filter(pred);
}

async function waitReceived(name, what, pred, count, timeoutMs) {
  const r = await waitFor(what, async () => {
    const g = await received(name, pred);
    return g.length >= (count || 1) ? { done: true, g } : { n: g.length };
  }, timeoutMs);
  return r.g;
}

// ---------------------------------------------------------------------------

async function scenarioBasics() {
  await pageT(() => { window.T.make('bus', '/bus', {}); });
  const open = await waitEvent('bus', 'open', 1);
  step('open');

  await pageT(() => window.T.track('sub', window.T.clients.bus.subscribe('demo/#', window.T.handler('bus'))));
  info.subscribe = await result('sub');
  check(info.subscribe.state === 'ok', 'subscribe demo/# acked', info.subscribe);
  await pageT(() => window.T.track('pub', window.T.clients.bus.publish('demo/browser/in', { n: 1 }, { qos: 1 })));
  info.publish = await result('pub');
  check(info.publish.state === 'ok', 'publish acked', info.publish);
  const back = await waitReceived('bus', 'our publish back', (g) => g.topic === 'demo/browser/in' && g.payload && g.payload.n === 1);
  check(back.length === 1, 'one copy', back);
  await mqttPub('demo/sensor-1/out', '{"temp": 22.5}');
  const fromPub = await waitReceived('bus', 'the mosquitto_pub message', (g) => g.topic === 'demo/sensor-1/out');
  check(fromPub[0].payload.temp === 22.5, 'payload as JSON', fromPub);
  await mqttPub('demo/sensor-1/out', 'plain text');
  await waitReceived('bus', 'the text message', (g) => g.payload === 'plain text');
  step('acks and messages', { subscribe_ms: info.subscribe.ms, publish_ms: info.publish.ms });

  // Refused: outside the allow lists, and above the route's publish QoS.
  await pageT(() => {
    const c = window.T.clients.bus;
    window.T.track('pub_out', c.publish('demo/browser/out', 'x'));
    window.T.track('sub_secret', c.subscribe('secret/#', window.T.handler('bus')));
    window.T.track('pub_qos2', c.publish('demo/browser/in', 'x', { qos: 2 }));
  });
  info.errors = { pub_out: await result('pub_out'), sub_secret: await result('sub_secret'), pub_qos2: await result('pub_qos2') };
  check(info.errors.pub_out.state === 'rejected' && info.errors.pub_out.code === 'not_allowed', 'publish outside the list: not_allowed', info.errors);
  check(info.errors.sub_secret.state === 'rejected' && info.errors.sub_secret.code === 'not_allowed', 'subscribe outside the list: not_allowed', info.errors);
  check(info.errors.pub_qos2.state === 'rejected' && info.errors.pub_qos2.code === 'qos_not_allowed', 'QoS 2: qos_not_allowed', info.errors);
  const st = await pageT(() => ({ state: window.T.clients.bus.state, subs: window.T.clients.bus.subscriptions }));
  check(st.state === 'open' && JSON.stringify(st.subs) === '["demo/#"]', 'still open, only demo/# held', st);
  check((await events('bus', 'close')).length === 0, 'no close after the errors');
  step('errors');

  // mosquitto goes away and comes back; the gateway reconnects to it and
  // subscribes again by itself, the browser's WebSocket stays open.
  await ask('stop_broker');
  step('broker stopped');
  await pageT(() => window.T.track('pub_outage', window.T.clients.bus.publish('demo/browser/in', { n: 'outage' }, { qos: 1 })));
  await sleep(300);
  info.outage_publish_before = await pageT(() => window.T.results.pub_outage.state);
  check(info.outage_publish_before === 'pending', 'no ack while the broker is down', info.outage_publish_before);
  const restarted = await ask('start_broker');
  step('broker back', restarted);
  info.outage_publish = await result('pub_outage', 20000);
  check(info.outage_publish.state === 'ok', 'the publish made during the outage is acked after it', info.outage_publish);
  await mqttPub('demo/sensor-1/out', '{"after": "broker restart"}');
  await waitReceived('bus', 'a message after the broker restart', (g) => g.payload && g.payload.after === 'broker restart');
  check((await events('bus', 'close')).length === 0, 'the WebSocket never closed', await events('bus'));
  step('delivering after the broker restart', { outage_publish_ms: info.outage_publish.ms });
  info.open = open[0];
}

async function scenarioGatewayRestart() {
  await pageT(() => { window.T.make('bus', '/bus', { minDelay: 200, maxDelay: 1600, maxQueued: 3 }); });
  await waitEvent('bus', 'open', 1);
  await pageT(() => {
    const T = window.T;
    const h = T.handler('bus');
    T.track('sub1', T.clients.bus.subscribe('demo/#', h));
    T.track('sub2', T.clients.bus.subscribe('demo/+/out', h)); // overlaps demo/#: still one call per message
  });
  check((await result('sub1')).state === 'ok' && (await result('sub2')).state === 'ok', 'both subscribed');
  step('subscribed');

  await ask('stop_gateway');
  const closeEv = await waitEvent('bus', 'close', 1);
  info.close = closeEv[0];
  check(closeEv[0].d.willReconnect === true, 'will reconnect', closeEv[0]);
  step('gateway stopped', { close: closeEv[0].d });

  // Four publishes while it is down: three wait, the fourth does not fit.
  await pageT(() => {
    const T = window.T;
    for (let n = 1; n <= 4; n++) T.track('q' + n, T.clients.bus.publish('demo/queued/in', { n }, { qos: 1 }));
  });
  info.dropped = await result('q4', 1000);
  check(info.dropped.state === 'rejected' && info.dropped.code === 'dropped', 'the fourth publish rejected at once', info.dropped);
  check(await pageT(() => window.T.clients.bus.queued) === 3, 'three queued');
  // Let a few attempts fail so the delays show their growth.
  await waitEvent('bus', 'reconnecting', 3, 8000);
  step('queue full while down');

  const opensBefore = (await events('bus', 'open')).length;
  await ask('start_gateway');
  const tBack = await pageT(() => window.T.now());
  step('gateway back');
  const opens = await waitEvent('bus', 'open', opensBefore + 1, 8000);
  info.reconnect_ms = opens[opens.length - 1].t - tBack;
  const resub = await waitEvent('bus', 'resubscribed', 2, 8000);
  info.resubscribed = resub[resub.length - 1].d;
  check(JSON.stringify(info.resubscribed.subscribed) === '["demo/#","demo/+/out"]' && !info.resubscribed.failed.length,
    'both filters subscribed again', info.resubscribed);
  info.queued = [];
  for (let n = 1; n <= 3; n++) info.queued.push(await result('q' + n, 10000));
  check(info.queued.every((r) => r.state === 'ok'), 'the queued publishes acked after the reconnect', info.queued);
  const q = await waitReceived('bus', 'the queued publishes through the restored subscription',
    (g) => g.topic === 'demo/queued/in', 3, 8000);
  info.queued_received = q.map((g) => g.payload.n);
  check(JSON.stringify(info.queued_received) === '[1,2,3]', 'in order, once each', info.queued_received);
  info.reconnecting = (await events('bus', 'reconnecting')).map((e) => e.d);
  step('reconnected', { reconnect_ms: info.reconnect_ms, reconnecting: info.reconnecting });

  // A message published now arrives once, though two held filters match it.
  await mqttPub('demo/sensor-9/out', '{"after": "gateway restart"}');
  await waitReceived('bus', 'a message after the gateway restart', (g) => g.payload && g.payload.after === 'gateway restart');
  await sleep(400);
  const copies = await received('bus', (g) => g.payload && g.payload.after === 'gateway restart');
  check(copies.length === 1, 'delivered once', copies);
  step('delivering after the gateway restart');
}

async function scenarioToken() {
  await page.exposeFunction('harnessToken', (ttl) => ask('token', { ttl }).then((r) => r.token));
  await pageT(() => {
    const T = window.T;
    // The first token lives 6 s, the next ones 10 minutes.
    T.make('me', '/me', {
      minDelay: 200,
      token: () => { T.tokenCalls++; return window.harnessToken(T.tokenCalls === 1 ? 6 : 600); },
    });
  });
  await waitEvent('me', 'open', 1);
  await pageT(() => {
    const T = window.T;
    T.track('sub', T.clients.me.subscribe('users/alice/#', T.handler('me')));
  });
  check((await result('sub')).state === 'ok', 'subscribed users/alice/#');
  await pageT(() => window.T.track('pub1', window.T.clients.me.publish('users/alice/in', { n: 1 })));
  check((await result('pub1')).state === 'ok', 'published');
  await waitReceived('me', 'our message', (g) => g.payload && g.payload.n === 1);
  step('open with a token');

  // The refresh goes halfway through the first token's 6 s.
  const ref = await waitEvent('me', 'refresh', 1, 8000);
  info.refresh = ref[0].d;
  if (!info.refresh.ok) {
    // The gateway refused (or does not know) {"refresh"}: the client reconnects at once.
    const opens = await waitEvent('me', 'open', 2, 5000);
    info.reopen_after_refresh_ms = opens[1].t - ref[0].t;
    await waitEvent('me', 'resubscribed', 2, 5000);
  }
  step('refresh', info.refresh);

  // Past the first token's exp (plus a second), messages still flow.
  await sleep(4500);
  await pageT(() => window.T.track('pub2', window.T.clients.me.publish('users/alice/in', { n: 2 })));
  check((await result('pub2')).state === 'ok', 'published after the first token expired');
  await waitReceived('me', 'a message after exp', (g) => g.payload && g.payload.n === 2);
  info.token_calls = await pageT(() => window.T.tokenCalls);
  check(info.token_calls >= 2, 'token() asked again for the refresh', info.token_calls);
  info.me_events = (await events('me')).map((e) => e.type + ' ' + JSON.stringify(e.d));
  const expired = (await events('me', 'close')).filter((e) => e.d.code === 4401);
  check(expired.length === 0, 'never closed 4401 (token expired): refreshed or reconnected before', expired);
  info.me_websockets = info.websockets.filter((u) => u.includes('/me?'));
  check(info.me_websockets.every((u) => /[?&]token=/.test(u)), 'the token went as ?token=', info.me_websockets.length);
  step('past exp');
}

async function scenarioReadme() {
  check(opts.snippet, 'snippet given');
  await page.addScriptTag({ type: 'module', content: opts.snippet });
  const line = await waitFor('the snippet\'s console line', async () => {
    const hit = info.console.find((l) => l.startsWith('log: demo/room1/in'));
    return hit ? { done: true, hit } : { console: info.console.slice(-3) };
  });
  info.readme_console = line.hit;
  step('readme snippet ran', { console: line.hit });
}

async function scenarioDemoPage() {
  const resp = await page.goto(opts.origin + '/', { waitUntil: 'load', timeout: WAIT_MS });
  check(resp && resp.status() === 200, 'demo page load', resp && resp.status());
  await waitFor('routes.json listed', async () => ((await page.$eval('body', (b) => b.dataset.routesLoaded)) ? { done: true } : null));
  const badge = () => page.$eval('#mqtt-state', (b) => ({ state: b.dataset.state, text: b.textContent }));
  const rows = () => page.$$eval('#log tr', (trs) => trs.map((tr) => Object.assign({}, tr.dataset,
    { text: tr.querySelector('td.m .body').textContent })));
  await page.click('#mqtt-connect');
  await waitFor('the panel open', async () => { const b = await badge(); return b.state === 'open' ? { done: true } : b; });
  await page.fill('#sub-filter', 'demo/#');
  await page.click('#subscribe');
  await waitFor('the subscribe ack', async () => ((await rows()).some((r) => r.kind === 'ack' && r.text.includes('subscribe demo/#')) ? { done: true } : null));
  step('panel subscribed');

  await ask('stop_gateway');
  info.badge_down = await waitFor('the badge to say reconnecting', async () => {
    const b = await badge();
    return b.text === 'reconnecting' ? Object.assign({ done: true }, b) : b;
  });
  const subsDown = await page.$$eval('#subs li', (lis) => lis.map((l) => l.dataset.filter).filter(Boolean));
  check(JSON.stringify(subsDown) === '["demo/#"]', 'the subscription still listed while down', subsDown);
  step('reconnecting shown');
  await ask('start_gateway');
  await waitFor('the panel open again', async () => { const b = await badge(); return b.state === 'open' ? { done: true } : b; }, 8000);
  const again = await waitFor('the open line naming the filter', async () => {
    const hit = (await rows()).find((r) => r.dir === 'sys' && r.text.includes('subscribing again to demo/#'));
    return hit ? { done: true, hit } : null;
  });
  info.reopen_row = again.hit.text;
  // The panel logs when the gateway has acked the subscriptions it sent again
  // (after the broker's SUBACK): from then on a message is routed to it.
  await waitFor('the re-subscribe acked', async () =>
    ((await rows()).some((r) => r.dir === 'sys' && r.text === 'subscriptions acked: demo/#') ? { done: true } : null));
  step('reopened');
  await mqttPub('demo/sensor-1/out', '{"after": "restart"}');
  const got = await waitFor('the message in the log', async () => {
    const hit = (await rows()).find((r) => r.topic === 'demo/sensor-1/out');
    return hit ? { done: true, hit } : null;
  });
  info.after_restart_row = got.hit.text;
  step('message after the restart');
}

async function main() {
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wsgate-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, timeout: 20000,
  });
  step('chromium started', { version: context.browser() ? context.browser().version() : null });
  page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('console', (m) => { if (info.console.length < 50) info.console.push(m.type() + ': ' + m.text()); });
  page.on('pageerror', (e) => info.page_errors.push(String(e && e.stack || e)));
  page.on('websocket', (w) => info.websockets.push(w.url().replace(/token=[^&]+/, 'token=…')));
  // A page of the gateway's own origin with nothing else running in it: the
  // module is imported from there the way a site would serve it.
  const resp = await page.goto(opts.origin + '/healthz', { waitUntil: 'load', timeout: WAIT_MS });
  check(resp && resp.status() === 200, 'page load', resp && resp.status());
  await installRecorder();
  step('module imported');
  if (opts.scenario === 'basics') await scenarioBasics();
  else if (opts.scenario === 'gateway_restart') await scenarioGatewayRestart();
  else if (opts.scenario === 'token') await scenarioToken();
  else if (opts.scenario === 'demo_page') await scenarioDemoPage();
  else await scenarioReadme();
  if (opts.scenario !== 'demo_page') {
    info.events = (await pageT(() => window.T.events)).map((e) => e.t + ' ' + e.c + ' ' + e.type + ' ' + JSON.stringify(e.d));
    await pageT(() => { for (const c of Object.values(window.T.clients)) c.close(); });
  }
  check(info.page_errors.length === 0, 'no page errors', info.page_errors);
  info.ok = true;
  info.elapsed_ms = Date.now() - t0;
}

const hardStop = setTimeout(() => {
  info.ok = false;
  info.error = 'js_client_check.js: overall time limit of ' + OVERALL_MS + ' ms reached';
  finish(1);
}, OVERALL_MS);
hardStop.unref();

main().then(() => finish(0)).catch(async (err) => {
  info.ok = false;
  info.error = err && err.message || String(err);
  try {
    if (page) info.events = (await page.evaluate(() => window.T ? window.T.events : []).catch(() => []))
      .map((e) => e.t + ' ' + e.c + ' ' + e.type + ' ' + JSON.stringify(e.d));
  } catch (e) { /* already failing */ }
  finish(1);
});
