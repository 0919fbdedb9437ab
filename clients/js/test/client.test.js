// client.test.js - wsgate-client.js in Node against a fake envelope gateway
// (fake_gateway.js, real WebSockets on 127.0.0.1 through the `ws` package):
// requests and replies, dispatch, the offline queue, reconnect with backoff and
// jitter, re-subscribe, token() per connection and the refresh before exp.

import test from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { WsgateClient, WsgateError, topicMatches, tokenExpiry } from '../wsgate-client.js';
import { FakeGateway, WebSocket, fakeJwt, nextEvent } from './fake_gateway.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every test gets its own fake gateway and closes its client and server.
async function setup(t, options, configure) {
  const gw = await new FakeGateway().start();
  if (configure) configure(gw);
  const c = new WsgateClient(gw.url, Object.assign({ WebSocket, minDelay: 20, maxDelay: 200 }, options || {}));
  t.after(async () => { c.close(); await gw.stop(); });
  return { gw, c };
}

test('topicMatches follows MQTT wildcards and $ topics', () => {
  const cases = [
    ['a/b', 'a/b', true], ['a/+', 'a/b', true], ['a/+', 'a/b/c', false], ['a/#', 'a', true],
    ['a/#', 'a/b/c', true], ['#', 'a/b', true], ['+/+', 'a/b', true], ['+', 'a/b', false],
    ['a/+/c', 'a//c', true], ['#', '$SYS/x', false], ['+/x', '$SYS/x', false], ['$SYS/#', '$SYS/x', true],
    ['a/b', 'a/b/c', false], ['a/b/c', 'a/b', false],
  ];
  for (const [f, t, want] of cases) assert.equal(topicMatches(f, t), want, f + ' vs ' + t);
});

test('tokenExpiry reads exp of a JWT, null for anything else', () => {
  assert.equal(tokenExpiry(fakeJwt({ sub: 'u', exp: 1700000000 })), 1700000000000);
  assert.equal(tokenExpiry(fakeJwt({ sub: 'u' })), null);
  assert.equal(tokenExpiry('not a jwt'), null);
  assert.equal(tokenExpiry('a.%%%.c'), null);
  assert.equal(tokenExpiry(null), null);
});

test('bad arguments are refused with clear errors', async () => {
  assert.throws(() => new WsgateClient('http://x/', { WebSocket }), /ws:\/\/ or wss:\/\//);
  assert.throws(() => new WsgateClient('ws://x:99999/', { WebSocket }), /ws:\/\/ or wss:\/\//);
  assert.throws(() => new WsgateClient('ws://127.0.0.1:1/', { WebSocket, maxQueue: 3 }), /unknown option "maxQueue"/);
  assert.throws(() => new WsgateClient('ws://127.0.0.1:1/', { WebSocket, token: 'abc' }), /token must be a function/);
  assert.throws(() => new WsgateClient('ws://127.0.0.1:1/', { WebSocket, minDelay: -1 }), /minDelay/);
  assert.throws(() => new WsgateClient('ws://127.0.0.1:1/', {}), /no WebSocket class/);
  const c = new WsgateClient('ws://127.0.0.1:1/', { WebSocket, reconnect: false });
  await assert.rejects(c.subscribe('', () => {}), TypeError);
  await assert.rejects(c.subscribe('a/#'), TypeError);
  await assert.rejects(c.publish('a/b'), /payload is required/);
  c.close();
  await assert.rejects(c.publish('a/b', 1), (e) => e instanceof WsgateError && e.code === 'closed');
});

test('subscribe and publish settle on acks; messages reach the matching handlers once', async (t) => {
  const { gw, c } = await setup(t);
  const got = [];
  const h1 = (m) => got.push(['h1', m.topic, m.payload]);
  const h2 = (m) => got.push(['h2', m.topic, m.payload, m.binary, m.retain]);
  await c.subscribe('app/#', h1, { qos: 1 });
  await c.subscribe('app/+/out', h2);
  await c.subscribe('app/+/out', h1); // h1 already gets app/# messages: called once per message
  assert.deepEqual(gw.last.requests, [{ subscribe: 'app/#', qos: 1, id: 1 }, { subscribe: 'app/+/out', id: 2 }],
    'a filter held already is not asked for again');
  assert.deepEqual(c.subscriptions, ['app/#', 'app/+/out']);

  await c.publish('app/a/in', { t: 21 }, { qos: 1, retain: true });
  await c.publish('app/a/in', 'text');
  await c.publish('app/a/in', new Uint8Array([0, 1, 254, 255]));
  assert.deepEqual(gw.last.requests.slice(2), [
    { topic: 'app/a/in', payload: { t: 21 }, qos: 1, retain: true, id: 3 },
    { topic: 'app/a/in', payload: 'text', id: 4 },
    { topic: 'app/a/in', payload: 'AAH+/w==', encoding: 'base64', id: 5 },
  ]);

  gw.last.send({ topic: 'app/x/out', payload: { v: 1 }, retain: true });
  gw.last.send({ topic: 'app/x/bin', payload: 'AAH+/w==', encoding: 'base64' });
  gw.last.send({ topic: 'other/x', payload: 'nobody' });
  await sleep(100);
  assert.deepEqual(got.slice(0, 2).sort(), [['h1', 'app/x/out', { v: 1 }], ['h2', 'app/x/out', { v: 1 }, false, true]].sort());
  assert.equal(got.length, 3);
  assert.equal(got[2][0], 'h1');
  assert.deepEqual(got[2][2], new Uint8Array([0, 1, 254, 255]));
});

test('errors carry the envelope code; errors without a request become "error" events', async (t) => {
  const { gw, c } = await setup(t, {}, (g) => {
    g.reply = (conn, req) => {
      if (req.subscribe === 'secret/#' || req.topic === 'app/out') {
        conn.send({ error: { code: 'not_allowed', message: 'outside the allow list', request: req.id } });
      } else {
        conn.send({ ack: req.id });
      }
    };
  });
  await assert.rejects(c.subscribe('secret/#', () => {}), (e) => e instanceof WsgateError &&
    e.code === 'not_allowed' && e.filter === 'secret/#' && e.message === 'outside the allow list');
  assert.deepEqual(c.subscriptions, [], 'a refused filter is not held');
  await assert.rejects(c.publish('app/out', 'x'), (e) => e.code === 'not_allowed' && e.topic === 'app/out');
  const ev = nextEvent(c, 'error');
  gw.last.send({ error: { code: 'bad_json', message: 'not valid JSON' } });
  const err = await ev;
  assert.equal(err.code, 'bad_json');
  await c.publish('app/in', 'still open');
});

test('unsubscribe asks the gateway once the last handler is gone; messages stop at once', async (t) => {
  const { gw, c } = await setup(t);
  const got = [];
  const h1 = (m) => got.push(1);
  const h2 = (m) => got.push(2);
  await c.subscribe('a/#', h1);
  await c.subscribe('a/#', h2);
  await c.unsubscribe('a/#', h1);
  assert.equal(gw.last.requests.length, 1, 'another handler still holds a/#');
  gw.last.send({ topic: 'a/b', payload: 'x' });
  await sleep(50);
  assert.deepEqual(got, [2]);
  await c.unsubscribe('a/#');
  assert.deepEqual(gw.last.requests[1], { unsubscribe: 'a/#', id: 2 });
  gw.last.send({ topic: 'a/b', payload: 'late' });
  await sleep(50);
  assert.deepEqual(got, [2]);
  assert.deepEqual(c.subscriptions, []);
});

test('reconnect: close event, backoff, token() asked again, subscriptions restored, in-flight publish sent again', async (t) => {
  let calls = 0;
  const { gw, c } = await setup(t, { token: async () => 'tok-' + (++calls), jitter: 0 }, (g) => {
    g.reply = (conn, req) => {
      // The first connection never acks "hold": it is in flight when the gateway goes.
      if (req.payload === 'hold' && g.connections.length === 1) return;
      conn.send({ ack: req.id });
    };
  });
  const got = [];
  await c.subscribe('a/#', (m) => got.push(m.payload));
  const held = c.publish('a/in', 'hold');
  await gw.until('the held publish', () => gw.last.requests.length === 2);
  assert.equal(gw.connections[0].token, 'tok-1');

  const closed = nextEvent(c, 'close');
  const reconnecting = nextEvent(c, 'reconnecting');
  const resubscribed = nextEvent(c, 'resubscribed');
  gw.connections[0].close(1012, 'restarting');
  assert.deepEqual(await closed, { code: 1012, reason: 'restarting', wasClean: true, wasOpen: true, willReconnect: true });
  assert.deepEqual(await reconnecting, { attempt: 1, delay: 20 });
  assert.deepEqual(await resubscribed, { subscribed: ['a/#'], failed: [] });
  await held;
  assert.equal(gw.connections.length, 2);
  assert.equal(gw.connections[1].token, 'tok-2', 'token() is asked again for each connection');
  assert.deepEqual(gw.connections[1].requests.map((r) => r.subscribe || r.payload), ['a/#', 'hold'],
    'subscriptions first, then the publish that was in flight');
  gw.connections[1].send({ topic: 'a/x', payload: 'after' });
  await sleep(50);
  assert.deepEqual(got, ['after']);
  assert.equal(c.state, 'open');
});

test('backoff doubles up to maxDelay, with jitter inside its bounds, and resets after an open', async (t) => {
  // A port nobody listens on: every attempt fails at once.
  const srv = net.createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const port = srv.address().port;
  await new Promise((r) => srv.close(r));
  const c = new WsgateClient('ws://127.0.0.1:' + port + '/bus', { WebSocket, minDelay: 10, maxDelay: 80, jitter: 0 });
  t.after(() => c.close());
  const delays = [];
  const closes = [];
  c.on('close', (e) => closes.push(e));
  await new Promise((resolve) => c.on('reconnecting', (e) => { delays.push(e); if (delays.length === 6) resolve(); }));
  assert.deepEqual(delays.map((d) => d.delay), [10, 20, 40, 80, 80, 80]);
  assert.deepEqual(delays.map((d) => d.attempt), [1, 2, 3, 4, 5, 6]);
  assert.ok(closes.length >= 5 && closes.every((e) => e.code === 1006 && !e.wasOpen), JSON.stringify(closes));
  c.close();

  const c2 = new WsgateClient('ws://127.0.0.1:' + port + '/bus', { WebSocket, minDelay: 100, maxDelay: 400, jitter: 0.5 });
  t.after(() => c2.close());
  const j = [];
  await new Promise((resolve) => c2.on('reconnecting', (e) => { j.push(e.delay); if (j.length === 2) { c2.close(); resolve(); } }));
  assert.ok(j[0] >= 50 && j[0] <= 150, 'first delay within 100 ms +-50 %: ' + j[0]);
  assert.ok(j[1] >= 100 && j[1] <= 300, 'second delay within 200 ms +-50 %: ' + j[1]);

  // After an open the next delay starts from minDelay again.
  const { gw, c: c3 } = await setup(t, { minDelay: 30, jitter: 0 });
  await nextEvent(c3, 'open');
  gw.last.close(1011, 'x');
  assert.equal((await nextEvent(c3, 'reconnecting')).delay, 30);
  await nextEvent(c3, 'open');
  gw.last.close(1011, 'x');
  assert.deepEqual(await nextEvent(c3, 'reconnecting'), { attempt: 1, delay: 30 });
});

test('publishes wait while disconnected, bounded by maxQueued; a dropped one rejects', async (t) => {
  const gw = await new FakeGateway().start();
  const url = gw.url;
  await gw.stop(); // nothing listens yet
  const c = new WsgateClient(url, { WebSocket, minDelay: 20, maxDelay: 40, maxQueued: 3 });
  t.after(() => c.close());
  const results = [];
  const ps = [1, 2, 3, 4].map((n) => c.publish('q/in', { n }).then(() => results.push('ok ' + n), (e) => results.push(e.code + ' ' + n)));
  await sleep(10);
  assert.deepEqual(results, ['dropped 4'], 'the fourth publish does not fit and rejects at once');
  assert.equal(c.queued, 3);

  // The gateway comes up on the same port: the queue goes out in order.
  const gw2 = new FakeGateway();
  const { WebSocketServer } = WebSocket;
  gw2.wss = null;
  const port = Number(new URL(url).port);
  await new Promise((resolve, reject) => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port }, resolve);
    wss.on('error', reject);
    gw2.wss = wss;
  });
  const seen = [];
  gw2.wss.on('connection', (ws) => ws.on('message', (d) => {
    const req = JSON.parse(d.toString());
    seen.push(req.payload.n);
    ws.send(JSON.stringify({ ack: req.id }));
  }));
  t.after(() => new Promise((r) => { for (const ws of gw2.wss.clients) ws.terminate(); gw2.wss.close(r); }));
  await Promise.all(ps);
  assert.deepEqual(results.slice(1), ['ok 1', 'ok 2', 'ok 3']);
  assert.deepEqual(seen, [1, 2, 3]);
  assert.equal(c.queued, 0);
});

test('in-flight publishes beyond maxQueued are dropped when the connection goes', async (t) => {
  const { gw, c } = await setup(t, { maxQueued: 1, minDelay: 300 }, (g) => { g.reply = () => {}; });
  await nextEvent(c, 'open');
  const a = c.publish('t/a', 1);
  const b = c.publish('t/b', 2);
  await gw.until('both publishes', () => gw.last.requests.length === 2);
  gw.last.close(1011, 'gone');
  await assert.rejects(b, (e) => e.code === 'dropped');
  assert.equal(c.queued, 1);
  c.close();
  await assert.rejects(a, (e) => e.code === 'closed');
});

test('close() rejects what is pending, sends 1000 and never reconnects', async (t) => {
  const { gw, c } = await setup(t, {}, (g) => { g.reply = () => {}; });
  await nextEvent(c, 'open');
  const sub = c.subscribe('a/#', () => {});
  const pub = c.publish('a/in', 'x');
  await gw.until('two requests', () => gw.last.requests.length === 2);
  const serverClose = new Promise((r) => gw.last.ws.on('close', (code, reason) => r([code, reason.toString()])));
  const closed = nextEvent(c, 'close');
  c.close(1000, 'bye');
  await assert.rejects(sub, (e) => e.code === 'closed');
  await assert.rejects(pub, (e) => e.code === 'closed');
  assert.deepEqual(await serverClose, [1000, 'bye']);
  const ev = await closed;
  assert.equal(ev.willReconnect, false);
  assert.equal(c.state, 'closed');
  await sleep(100);
  assert.equal(gw.connections.length, 1);
});

test('reconnect: false gives up after the first close', async (t) => {
  const { gw, c } = await setup(t, { reconnect: false });
  await nextEvent(c, 'open');
  const p = c.subscribe('a/#', () => {});
  await p;
  gw.last.close(1001, 'going away');
  const ev = await nextEvent(c, 'close');
  assert.equal(ev.willReconnect, false);
  assert.equal(c.state, 'closed');
  await assert.rejects(c.publish('a/b', 1), (e) => e.code === 'closed');
});

test('token refresh before exp: an ack keeps the connection', async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const tokens = [fakeJwt({ sub: 'u', exp: now + 2 }), fakeJwt({ sub: 'u', exp: now + 3600 })];
  let n = 0;
  const { gw, c } = await setup(t, { token: () => tokens[Math.min(n++, 1)], refreshBefore: 60 });
  await nextEvent(c, 'open');
  assert.equal(gw.last.token, tokens[0]);
  // exp is 2 s away, less than refreshBefore: the refresh goes halfway through.
  const r = await nextEvent(c, 'refresh', 4000);
  assert.equal(r.ok, true);
  assert.deepEqual(gw.last.requests, [{ refresh: tokens[1], id: 1 }]);
  assert.equal(gw.connections.length, 1);
  assert.equal(c.state, 'open');
});

test('token refresh refused: reconnect at once with the new token', async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const tokens = [fakeJwt({ sub: 'u', exp: now + 2 }), fakeJwt({ sub: 'u', exp: now + 3600 })];
  let n = 0;
  const { gw, c } = await setup(t, { token: () => tokens[Math.min(n++, 1)], minDelay: 5000 }, (g) => {
    g.reply = (conn, req) => {
      if (req.refresh) conn.send({ error: { code: 'bad_request', message: 'unknown request', request: req.id } });
      else conn.send({ ack: req.id });
    };
  });
  await c.subscribe('a/#', () => {});
  const r = await nextEvent(c, 'refresh', 4000);
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'bad_request');
  const rc = await nextEvent(c, 'reconnecting');
  assert.equal(rc.delay, 0, 'no backoff: the new token is in hand');
  await gw.until('the second connection', () => gw.connections.length === 2 && gw.last.requests.length === 1);
  assert.equal(gw.last.token, tokens[1]);
  assert.deepEqual(gw.last.requests, [{ subscribe: 'a/#', id: 3 }]);
  assert.equal(n, 2, 'the refreshed token was used, not asked for a third time');
});

test('a refresh with no reply in refreshTimeout also reconnects', async (t) => {
  const now = Math.floor(Date.now() / 1000);
  let n = 0;
  const { gw, c } = await setup(t, { token: () => fakeJwt({ sub: 'u', exp: now + 2 + n++ * 3600 }), refreshTimeout: 300 },
    (g) => { g.reply = () => {}; });
  await nextEvent(c, 'open');
  const r = await nextEvent(c, 'refresh', 4000);
  assert.equal(r.error.code, 'timeout');
  await gw.until('the second connection', () => gw.connections.length === 2);
});

test('token() failing is an error event and a later retry', async (t) => {
  let n = 0;
  const { gw, c } = await setup(t, { token: async () => { if (n++ === 0) throw new Error('auth service down'); return 'ok'; } });
  const err = await nextEvent(c, 'error');
  assert.equal(err.code, 'token_failed');
  assert.match(err.message, /auth service down/);
  await nextEvent(c, 'open');
  assert.equal(gw.last.token, 'ok');
});

test('the copy under www/ is the module itself', () => {
  const a = fs.readFileSync(path.join(here, '..', 'wsgate-client.js'));
  const b = fs.readFileSync(path.join(here, '..', '..', '..', 'www', 'wsgate-client.js'));
  assert.ok(a.equals(b), 'www/wsgate-client.js differs from clients/js/wsgate-client.js: run `cp clients/js/wsgate-client.js www/`');
});

test('requests made before the first open go out once it opens, subscriptions first', async (t) => {
  const gw = await new FakeGateway().start();
  const c = new WsgateClient(gw.url, { WebSocket });
  t.after(async () => { c.close(); await gw.stop(); });
  assert.equal(c.state, 'connecting');
  const pub = c.publish('a/in', 'early');
  const sub = c.subscribe('a/#', () => {});
  assert.equal(c.queued, 1);
  await Promise.all([pub, sub]);
  assert.deepEqual(gw.last.requests, [{ subscribe: 'a/#', id: 1 }, { topic: 'a/in', payload: 'early', id: 2 }]);
});

test('requestTimeout rejects a request the gateway never answers; unsubscribing before the ack rejects the subscribe', async (t) => {
  const { gw, c } = await setup(t, { requestTimeout: 150 }, (g) => { g.reply = () => {}; });
  await nextEvent(c, 'open');
  const t0 = Date.now();
  await assert.rejects(c.publish('a/in', 1), (e) => e.code === 'timeout');
  assert.ok(Date.now() - t0 >= 140);
  const sub = assert.rejects(c.subscribe('b/#', () => {}), (e) => e.code === 'unsubscribed');
  await assert.rejects(c.unsubscribe('b/#'), (e) => e.code === 'timeout');
  await sub;
  assert.deepEqual(c.subscriptions, []);
  assert.equal(gw.last.requests.length, 3);
});

test('a token() with nothing newer sends no refresh; the gateway\'s 4401 at exp brings a reconnect that asks again', async (t) => {
  const now = Math.floor(Date.now() / 1000);
  const first = fakeJwt({ sub: 'u', exp: now + 2 });
  const later = fakeJwt({ sub: 'u', exp: now + 3600 });
  let n = 0;
  // token() keeps returning the first token for a while (an identity service's cache).
  const { gw, c } = await setup(t, { token: () => (++n <= 3 ? first : later), jitter: 0 });
  await nextEvent(c, 'open');
  await sleep(1300); // past the halfway refresh
  assert.ok(n >= 2, 'token() asked at the refresh time');
  assert.deepEqual(gw.last.requests, [], 'no {"refresh"} with the same token');
  const closed = nextEvent(c, 'close');
  gw.last.close(4401, 'token expired');
  assert.equal((await closed).code, 4401);
  await gw.until('the reconnect', () => gw.connections.length === 2);
  assert.ok([first, later].includes(gw.last.token));
});
