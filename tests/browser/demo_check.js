#!/usr/bin/env node
// demo_check.js - drives wsgate's demo page (www/, served by wsgate) in headless
// Chromium through playwright-core, the way a user would: by labels, clicks and
// keys. Run by tests/browser/test_demo_page.py, which starts the gateway, the
// echo backend and mosquitto.
//
//   node demo_check.js '{"page": URL, "scenario": "echo"|"mqtt", "shot": PNG,
//                        "ignore_cert": bool, "mqtt_port": N, "dead_path": "/dead"}'
//
// Scenario "echo" (over ws:// or wss://, as the page URL's scheme says):
//   the page loads and lists the routes; Connect on /echo opens with subprotocol
//   "binary"; a text message and a hex byte message come back with their sizes;
//   bad hex is refused in the form; the metrics legend counts the connection and
//   its messages and the chart is drawn; Disconnect logs 1000 and its meaning; a
//   route whose backend is down logs 1011, an unknown path a connection that
//   never opened (1006).
// Scenario "mqtt": the same page connects its MQTT envelope panel to /bus,
//   subscribes to demo/# (ack), receives what `mosquitto_pub` publishes, publishes
//   a retained message that `mosquitto_sub` then reads from the broker, gets
//   not_allowed errors for a subscription and a publish outside the allow lists
//   (connection stays open), unsubscribes (ack) and then receives nothing more.
// Both end with a full-page screenshot at `shot`.
//
// Prints one JSON line ({"ok": true, ...} or {"ok": false, "error": ...}) and
// exits 0 / 1 (2: bad usage). Every wait is bounded; the whole run is capped.
// Environment: WSGATE_CHROMIUM (default /usr/bin/chromium),
// WSGATE_CHROMIUM_PROFILE (an empty directory for a fresh profile).

'use strict';

const fs = require('fs');
const path = require('path');
// Beside tests/clients/package.json, so playwright-core comes from there.
const kit = require('../clients/browser_kit.js');

const { check } = kit;
const WAIT_MS = 8000;

let opts;
try {
  opts = JSON.parse(process.argv[2] || '');
  if (!opts.page || !['echo', 'mqtt'].includes(opts.scenario) || !opts.shot) throw new Error('missing page, scenario or shot');
} catch (e) {
  process.stderr.write('usage: demo_check.js \'{"page": URL, "scenario": "echo"|"mqtt", "shot": PNG, ...}\': ' + e.message + '\n');
  process.exit(2);
}

const OVERALL_MS = 40000 + 1000 * (Number(opts.showcase_s) || 0);

const info = { scenario: opts.scenario, page_url: opts.page, steps: [], console: [], page_errors: [],
  failed_requests: [], websockets: [] };
// Every wait ends at once when the page throws or a request fails.
const R = new kit.CheckRun('demo_check.js', info, {
  overallMs: OVERALL_MS, waitMs: WAIT_MS, pollMs: 80,
  guard: (what) => {
    if (info.page_errors.length) throw new Error('page error while waiting for ' + what + ': ' + info.page_errors[0]);
    if (info.failed_requests.length) throw new Error('a request failed while waiting for ' + what + ': ' + info.failed_requests.join('; '));
  },
});
const t0 = R.t0;
const step = (s, extra) => R.step(s, extra);
const waitFor = (what, fn, timeoutMs) => R.waitFor(what, fn, timeoutMs);

// The log as data: one object per row.
async function logRows(page) {
  return page.$$eval('#log tr', (trs) => trs.map((tr) => Object.assign({}, tr.dataset,
    { text: tr.querySelector('td.m .body').textContent })));
}

// Waits for a log row matching pred (rows as logRows gives them).
async function waitRow(page, what, pred, timeoutMs) {
  const r = await waitFor(what, async () => {
    const rows = await logRows(page);
    const hit = rows.find(pred);
    return hit ? { done: true, row: hit } : { rows: rows.slice(-4) };
  }, timeoutMs);
  return r.row;
}

async function badge(page, id) {
  return page.$eval('#' + id, (b) => ({ state: b.dataset.state, text: b.textContent }));
}

async function legend(page, route) {
  return page.$$eval('#legend tr', (trs, r) => {
    const tr = trs.find((x) => x.dataset.route === r);
    return tr ? { active: Number(tr.dataset.active), rate: Number(tr.dataset.rate), total: Number(tr.dataset.total) } : null;
  }, route);
}

const run = kit.run;

async function loadPage(page) {
  const resp = await page.goto(opts.page, { waitUntil: 'load', timeout: WAIT_MS });
  info.page_status = resp ? resp.status() : null;
  check(resp && resp.status() === 200, 'page load status', info.page_status);
  await waitFor('routes.json to be listed', async () => {
    const n = await page.$eval('body', (b) => b.dataset.routesLoaded);
    return n ? { done: true } : null;
  });
  info.route_options = await page.$$eval('#route option', (os) => os.map((o) => o.textContent));
  info.mqtt_route_options = await page.$$eval('#mqtt-route option', (os) => os.map((o) => o.textContent));
  step('page loaded', { routes: info.route_options });
  // Each form control has a label a screen reader announces.
  info.unlabelled = await page.$$eval('input, select, textarea, button', (els) => els
    .filter((el) => el.type !== 'hidden' && !(el.labels && el.labels.length) && !el.getAttribute('aria-label') &&
      !(el.tagName === 'BUTTON' && el.textContent.trim()))
    .map((el) => el.id || el.outerHTML.slice(0, 60)));
  check(info.unlabelled.length === 0, 'controls without a label', info.unlabelled);
}

// ---------------------------------------------------------------------------

async function scenarioEcho(page) {
  const scheme = new URL(opts.page).protocol === 'https:' ? 'wss:' : 'ws:';
  const host = new URL(opts.page).host;
  check(info.route_options.some((o) => o.startsWith('/echo')), 'route list has /echo', info.route_options);

  // The route picker filled the URL with the page's own scheme and host.
  await page.getByLabel('Route', { exact: true }).selectOption({ index: 0 });
  const url = await page.getByLabel('WebSocket URL').inputValue();
  info.ws_url = url;
  check(url === scheme + '//' + host + '/echo', 'URL filled from the route', url);
  check(await page.getByLabel('Subprotocols offered').inputValue() === 'binary', 'subprotocol from routes.json');

  // Keyboard only: focus Connect and press Enter.
  await page.focus('#connect');
  await page.keyboard.press('Enter');
  await waitFor('the connection to open', async () => {
    const b = await badge(page, 'conn-state');
    return b.state === 'open' ? { done: true } : b;
  });
  await waitRow(page, 'the "open" log line', (r) => r.conn === 'echo' && r.dir === 'sys' && r.text.includes('subprotocol: binary'));
  step('connected', { url });

  // Text: typed, Enter sends, the echo comes back (a binary frame: the route's message type).
  const text = 'hello from Chromium ✓';
  const textBytes = Buffer.byteLength(text);
  await page.getByLabel('Message', { exact: true }).fill(text);
  await page.getByLabel('Message', { exact: true }).press('Enter');
  await waitRow(page, 'the sent text in the log', (r) => r.dir === 'out' && r.kind === 'text' && Number(r.size) === textBytes);
  const echoed = await waitRow(page, 'the text echoed back', (r) => r.dir === 'in' && r.text.includes('"' + text + '"'));
  info.text_echo = echoed;
  check(Number(echoed.size) === textBytes, 'echoed size', echoed);
  step('text echoed', { bytes: textBytes });

  // Bytes as hex, including ones that are not UTF-8.
  await page.locator('label[for=kind-hex]').click();
  const hexField = page.getByLabel('Message (hex bytes)', { exact: true });
  await hexField.fill('zz 01');
  await page.click('#send');
  const err = await page.$eval('#message-error', (e) => e.textContent);
  const invalid = await hexField.getAttribute('aria-invalid');
  info.bad_hex = { error: err, invalid };
  check(err.includes('not a hex digit') && invalid === 'true', 'bad hex refused in the form', info.bad_hex);
  await hexField.fill('00 01 fe ff 80 7f');
  await hexField.press('Enter');
  const bin = await waitRow(page, 'the bytes echoed back', (r) => r.dir === 'in' && r.kind === 'binary' && r.text.startsWith('00 01 fe ff 80 7f'));
  info.binary_echo = bin;
  check(Number(bin.size) === 6, 'binary echo size', bin);
  step('binary echoed');

  // Metrics: the legend counts this connection and its messages, the chart is drawn.
  const lg = await waitFor('the metrics legend to show the echo connection', async () => {
    const l = await legend(page, 'echo');
    return l && l.active === 1 && l.total >= 4 ? Object.assign({ done: true }, l) : l;
  }, 6000);
  info.legend_echo = lg;
  const rateSeen = await waitFor('a non-zero messages/s for echo', async () => {
    const l = await legend(page, 'echo');
    return l && l.rate > 0 ? Object.assign({ done: true }, l) : l;
  }, 4000).catch(() => null);
  info.rate_seen = rateSeen;
  info.chart_pixels = await page.$eval('#chart', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
    return n;
  });
  check(info.chart_pixels > 500, 'chart drawn', info.chart_pixels);
  info.chart_label = await page.getAttribute('#chart', 'aria-label');
  check(/echo: 1 active/.test(info.chart_label), 'chart text alternative', info.chart_label);
  step('metrics shown', lg);

  // A few more messages for the chart, then the screenshot later.
  await page.locator('label[for=kind-text]').click();
  await page.getByLabel('Message', { exact: true }).fill('burst');
  await page.selectOption('#repeat', '10');
  await page.click('#send');
  await waitFor('the burst echoed', async () => {
    const rows = await logRows(page);
    const n = rows.filter((r) => r.dir === 'in' && r.text.includes('burst')).reduce((a, r) => a + Number(r.size), 0);
    return n >= 50 ? { done: true } : { bytes: n };
  });
  await page.selectOption('#repeat', '1');

  // Disconnect: a clean 1000, explained.
  await page.click('#connect');
  const closed = await waitRow(page, 'the close line', (r) => r.conn === 'echo' && r.code !== undefined);
  info.close = closed;
  check(closed.code === '1000' && closed.text.includes('Normal closure'), 'close 1000 with its meaning', closed);
  step('closed 1000');

  // A backend that is down: the gateway closes with 1011 naming the route.
  if (opts.dead_path) {
    await page.getByLabel('Route', { exact: true }).selectOption('custom');
    await page.getByLabel('WebSocket URL').fill(scheme + '//' + host + opts.dead_path);
    await page.getByLabel('Subprotocols offered').fill('');
    await page.click('#connect');
    const dead = await waitRow(page, 'the close of ' + opts.dead_path, (r) => r.conn === opts.dead_path && r.code !== undefined);
    info.dead_close = dead;
    check(dead.code === '1011' && dead.text.includes('Internal error'), '1011 with its meaning', dead);
    step('backend down: 1011');

    // An unknown path: the handshake is refused (404), which a page sees as 1006.
    await page.getByLabel('WebSocket URL').fill(scheme + '//' + host + '/no-such-route');
    await page.click('#connect');
    const refused = await waitRow(page, 'the refused handshake', (r) => r.conn === '/no-such-route' && r.code !== undefined);
    info.refused_close = refused;
    check(refused.code === '1006' && refused.text.includes('never opened'), 'refused handshake explained', refused);
    step('unknown path: 1006');
  }
}

// ---------------------------------------------------------------------------

const mqttPub = (topic, message) => kit.mqttPub(opts.mqtt_port, topic, message);

async function scenarioMqtt(page) {
  check(opts.mqtt_port, 'mqtt_port given');
  check(info.mqtt_route_options.some((o) => o.startsWith('/bus')), 'envelope route list has /bus', info.mqtt_route_options);
  const allowText = await page.$eval('#mqtt-allow', (e) => e.textContent);
  check(allowText.includes('demo/+/in') && allowText.includes('demo/#'), 'allow lists shown', allowText);

  // Some echo traffic too, so the screenshot shows both routes on the chart.
  await page.click('#connect');
  await waitFor('the echo connection to open', async () => {
    const b = await badge(page, 'conn-state');
    return b.state === 'open' ? { done: true } : b;
  });
  await page.getByLabel('Message', { exact: true }).fill('hello, backend');
  await page.getByLabel('Message', { exact: true }).press('Enter');
  await waitRow(page, 'the echo', (r) => r.conn === 'echo' && r.dir === 'in');

  await page.click('#mqtt-connect');
  await waitFor('the MQTT connection to open', async () => {
    const b = await badge(page, 'mqtt-state');
    if (b.state === 'error' || b.state === 'closed') {
      const rows = await logRows(page);
      throw new Error('the /bus connection closed: ' + JSON.stringify(rows.filter((r) => r.conn === 'bus').slice(-2)));
    }
    return b.state === 'open' ? { done: true } : b;
  });
  step('/bus open');

  // Subscribe within the allow list: acknowledged, listed.
  await page.getByLabel('Topic filter').fill('demo/#');
  const subHint = await page.$eval('#sub-check', (e) => e.textContent);
  check(subHint.includes('Within the allow list'), 'allowed filter hint', subHint);
  await page.getByLabel('Topic filter').press('Enter');
  const ack = await waitRow(page, 'the subscribe ack', (r) => r.conn === 'bus' && r.kind === 'ack');
  info.subscribe_ack = ack;
  await waitFor('demo/# in the subscription list', async () => {
    const f = await page.$$eval('#subs li', (lis) => lis.map((l) => l.dataset.filter).filter(Boolean));
    return f.includes('demo/#') ? { done: true } : { filters: f };
  });
  step('subscribed demo/#');

  // A message published by someone else (mosquitto_pub) arrives.
  await mqttPub('demo/sensor-1/out', '{"temp": 22.5, "unit": "C"}');
  const got = await waitRow(page, 'the message from mosquitto_pub', (r) => r.conn === 'bus' && r.topic === 'demo/sensor-1/out');
  info.received = got;
  check(got.text.includes('"temp":22.5'), 'payload shown as JSON', got);
  await mqttPub('demo/sensor-2/out', 'plain text, not JSON');
  const got2 = await waitRow(page, 'the text message from mosquitto_pub', (r) => r.conn === 'bus' && r.topic === 'demo/sensor-2/out');
  check(got2.text.includes('"plain text, not JSON"'), 'text payload shown as a string', got2);
  step('received from mosquitto_pub');

  // Publish from the page (QoS 1, retained): ack after the broker's PUBACK, our
  // own subscription sees it, and the broker holds it for mosquitto_sub.
  await page.getByLabel('Topic', { exact: true }).fill('demo/browser/in');
  await page.getByLabel('Payload').fill('{"from": "chromium", "n": 1}');
  await page.getByLabel('Retain').check();
  await page.click('#publish');
  const pubAck = await waitRow(page, 'the publish ack', (r) => r.conn === 'bus' && r.kind === 'ack' && r.text.includes('publish'));
  info.publish_ack = pubAck;
  await waitRow(page, 'our publish back through the broker', (r) => r.conn === 'bus' && r.topic === 'demo/browser/in');
  const sub = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(opts.mqtt_port), '-t', 'demo/browser/in', '-C', '1', '-W', '5'], 8000);
  info.mosquitto_sub = sub;
  check(sub.code === 0 && JSON.parse(sub.stdout) && JSON.parse(sub.stdout).from === 'chromium', 'mosquitto_sub read the page\'s publish', sub);
  await page.getByLabel('Retain').uncheck();
  step('published, read back with mosquitto_sub');

  // Refused: a subscription wider than allowed, and a publish outside the list.
  await page.getByLabel('Topic filter').fill('secret/#');
  const badHint = await page.$eval('#sub-check', (e) => e.textContent);
  check(badHint.includes('not_allowed'), 'refused filter hint', badHint);
  await page.click('#subscribe');
  const subErr = await waitRow(page, 'the subscribe error', (r) => r.conn === 'bus' && r.dir === 'err' && r.text.includes('secret/#'));
  info.subscribe_error = subErr;
  check(subErr.errorCode === 'not_allowed', 'subscribe error code', subErr);
  const resultText = await page.$eval('#mqtt-result', (e) => e.textContent);
  check(resultText.includes('not_allowed'), 'error shown under the panel', resultText);

  await page.getByLabel('Topic', { exact: true }).fill('demo/browser/out');
  await page.click('#publish');
  const pubErr = await waitRow(page, 'the publish error', (r) => r.conn === 'bus' && r.dir === 'err' && r.text.includes('demo/browser/out'));
  info.publish_error = pubErr;
  check(pubErr.errorCode === 'not_allowed', 'publish error code', pubErr);
  const subsNow = await page.$$eval('#subs li', (lis) => lis.map((l) => l.dataset.filter).filter(Boolean));
  check(subsNow.length === 1 && subsNow[0] === 'demo/#', 'only demo/# subscribed', subsNow);
  check((await badge(page, 'mqtt-state')).state === 'open', 'connection still open after errors');
  step('refused topics shown as errors');

  // Leave the page in a good state for the screenshot: one more message.
  await page.getByLabel('Topic', { exact: true }).fill('demo/browser/in');
  await page.getByLabel('Payload').fill('{"from": "chromium", "n": 2}');
  await page.getByLabel('Payload').press('Control+Enter');
  await waitRow(page, 'the second publish back', (r) => r.conn === 'bus' && r.topic === 'demo/browser/in' && r.text.includes('"n":2'));
  await waitFor('the metrics legend to show bus traffic', async () => {
    const l = await legend(page, 'bus');
    return l && l.active === 1 && l.total >= 6 ? Object.assign({ done: true }, l) : l;
  }, 6000);
  info.legend_bus = await legend(page, 'bus');
  info.brokers = await page.$eval('#brokers', (e) => e.textContent);
  step('bus in the metrics');
}

async function scenarioMqttUnsubscribe(page) {
  // Unsubscribe with the chip's button: ack, list empty, nothing arrives after.
  await page.getByRole('button', { name: 'Unsubscribe from demo/#' }).click();
  await waitFor('the subscription list to empty', async () => {
    const f = await page.$$eval('#subs li', (lis) => lis.map((l) => l.dataset.filter).filter(Boolean));
    return f.length === 0 ? { done: true } : { filters: f };
  });
  const before = (await logRows(page)).filter((r) => r.topic === 'demo/late/out').length;
  await mqttPub('demo/late/out', 'after unsubscribe');
  await new Promise((r) => setTimeout(r, 700));
  const after = (await logRows(page)).filter((r) => r.topic === 'demo/late/out').length;
  check(before === 0 && after === 0, 'no message after unsubscribe', { before, after });
  step('unsubscribed');
}

// For the README's picture only (WSGATE_UPDATE_SCREENSHOT=1): some seconds of
// varied traffic on both routes so the chart has a history worth showing.
async function showcase(page, seconds) {
  const end = Date.now() + seconds * 1000;
  let i = 0;
  while (Date.now() < end) {
    const phase = Math.sin(i / 6) + 1.2;
    await page.getByLabel('Message', { exact: true }).fill('tick ' + i);
    await page.selectOption('#repeat', phase > 1.6 ? '10' : '1');
    await page.click('#send');
    if (i % 2 === 0) {
      await page.getByLabel('Payload').fill(JSON.stringify({ from: 'chromium', n: i, temp: +(20 + phase).toFixed(1) }));
      await page.click('#publish');
    }
    if (i % 5 === 0) await mqttPub('demo/sensor-1/out', JSON.stringify({ temp: +(21 + phase).toFixed(1), unit: 'C' }));
    i++;
    await new Promise((r) => setTimeout(r, 250 + 250 * phase));
  }
  await page.selectOption('#repeat', '1');
  await page.getByLabel('Message', { exact: true }).fill('hello, backend');
  await page.getByLabel('Payload').fill('{"temp": 21.5}');
  await page.getByLabel('Topic filter').fill('demo/#');
  await page.click('#send');
  await page.click('#publish');
  await new Promise((r) => setTimeout(r, 600));
  step('showcase traffic', { seconds, rounds: i });
}

async function main() {
  const args = kit.CHROMIUM_ARGS.concat(opts.ignore_cert ? ['--ignore-certificate-errors'] : [],
    // For diagnosis by hand only (e.g. --disable-http2); the tests never set it.
    (process.env.WSGATE_CHROMIUM_EXTRA_ARGS || '').split(' ').filter(Boolean));
  const context = await R.launchPersistent({
    profileFromEnv: true,
    args,
    viewport: { width: 1280, height: 900 },
    colorScheme: 'light',
  });
  step('chromium started', { version: context.browser() ? context.browser().version() : null, args });
  const page = context.pages()[0] || await context.newPage();
  R.watchPage(page, { requests: true, websockets: (u) => u });

  await loadPage(page);
  if (opts.scenario === 'echo') {
    await scenarioEcho(page);
  } else {
    await scenarioMqtt(page);
  }
  if (opts.showcase_s) await showcase(page, opts.showcase_s);
  fs.mkdirSync(path.dirname(opts.shot), { recursive: true });
  await page.evaluate(() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); });
  await page.screenshot({ path: opts.shot, fullPage: true, timeout: WAIT_MS });
  info.screenshot = opts.shot;
  step('screenshot saved');
  if (opts.scenario === 'mqtt') await scenarioMqttUnsubscribe(page);
  info.ok = true;
  info.elapsed_ms = Date.now() - t0;
}

R.start(main, async () => {
  const page = R.context && R.context.pages()[0];
  if (page) {
    info.log_tail = (await logRows(page).catch(() => [])).slice(-12);
    await page.screenshot({ path: opts.shot, fullPage: true, timeout: 3000 }).catch(() => {});
  }
});
