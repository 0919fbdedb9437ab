#!/usr/bin/env node
// mqtt_client.js - MQTT.js (the npm package `mqtt`) speaking MQTT over
// WebSocket through a wsgate `tcp` route to a real broker, cross-checked by a
// second MQTT.js client connected to the broker's plain TCP port directly.
//
//   node mqtt_client.js WS_URL TCP_URL PROTOCOL_VERSION PAYLOAD_BYTES
//
// e.g. node mqtt_client.js ws://127.0.0.1:8080/mqtt mqtt://127.0.0.1:1883 4 200000
//
// Steps (each with a time limit):
//  1. `ws` client connects through the gateway (CONNECT/CONNACK), `tcp` client
//     connects to the broker directly.
//  2. Both subscribe (QoS 1) to a unique topic and get their SUBACKs.
//  3. `ws` publishes a small message (QoS 1) and a PAYLOAD_BYTES message
//     (QoS 1): both clients must receive both, byte for byte.
//  4. `tcp` publishes (QoS 1): `ws` (and `tcp`) must receive it; nothing else
//     may arrive (unexpected_messages counts the rest).
//  5. Both disconnect cleanly.
// Prints one JSON line on stdout ({"ok": true, ...} or {"ok": false,
// "error": ...}) and exits 0 on success, 1 on failure, 2 on bad usage.

'use strict';

const crypto = require('crypto');
const path = require('path');
const mqtt = require('mqtt');
// The WebSocket implementation MQTT.js itself uses under Node (its dependency `ws`).
const WS = require(require.resolve('ws', { paths: [path.dirname(require.resolve('mqtt'))] }));

const STEP_TIMEOUT_MS = 8000;

function result(obj, code) {
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(code));
}

if (process.argv.length !== 6) {
  process.stderr.write('usage: mqtt_client.js WS_URL TCP_URL PROTOCOL_VERSION PAYLOAD_BYTES\n');
  process.exit(2);
}
const [wsUrl, tcpUrl, versionArg, sizeArg] = process.argv.slice(2);
const protocolVersion = parseInt(versionArg, 10);
const bigSize = parseInt(sizeArg, 10);

const info = { ws_url: wsUrl, protocol_version: protocolVersion, steps: [] };
let wsSocket = null; // the WebSocket under the `ws` client, to read the selected subprotocol

function withTimeout(promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out after ' + STEP_TIMEOUT_MS + ' ms: ' + what)),
        STEP_TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

function connect(url, name, extra) {
  return withTimeout(new Promise((resolve, reject) => {
    const client = mqtt.connect(url, Object.assign({
      protocolVersion,
      clientId: 'wsgate-it-' + name + '-' + crypto.randomBytes(4).toString('hex'),
      clean: true,
      connectTimeout: STEP_TIMEOUT_MS,
      reconnectPeriod: 0, // a failure must fail the test, not be retried quietly
      keepalive: 30,
    }, extra || {}));
    client.received = [];
    client.waiters = [];
    client.on('message', (topic, payload) => {
      client.received.push({ topic, payload });
      for (const w of client.waiters.slice()) w();
    });
    client.once('connect', (connack) => resolve({ client, connack }));
    client.on('error', (err) => reject(new Error(name + ': ' + err.message)));
    client.once('close', () => reject(new Error(name + ': connection closed before CONNACK')));
  }), name + ' CONNACK');
}

function subscribe(client, topic, name) {
  return withTimeout(new Promise((resolve, reject) => {
    client.subscribe(topic, { qos: 1 }, (err, granted) => {
      if (err) return reject(new Error(name + ' subscribe: ' + err.message));
      if (!granted || granted.length !== 1 || granted[0].qos !== 1) {
        return reject(new Error(name + ' SUBACK not QoS 1: ' + JSON.stringify(granted)));
      }
      resolve(granted);
    });
  }), name + ' SUBACK');
}

function publish(client, topic, payload, name) {
  return withTimeout(new Promise((resolve, reject) => {
    client.publish(topic, payload, { qos: 1 }, (err) => {
      if (err) return reject(new Error(name + ' publish: ' + err.message));
      resolve();
    });
  }), name + ' PUBACK');
}

function waitMessage(client, topic, payload, name) {
  return withTimeout(new Promise((resolve) => {
    const check = () => {
      const i = client.received.findIndex((m) => m.topic === topic && m.payload.equals(payload));
      if (i < 0) return false;
      client.received.splice(i, 1);
      client.waiters = client.waiters.filter((w) => w !== check);
      resolve();
      return true;
    };
    if (!check()) client.waiters.push(check);
  }), name + ' receiving ' + payload.length + ' bytes on ' + topic);
}

function end(client, name) {
  return withTimeout(new Promise((resolve) => client.end(false, {}, resolve)), name + ' DISCONNECT');
}

async function main() {
  const topic = 'wsgate/it/' + crypto.randomBytes(6).toString('hex');
  const t0 = Date.now();
  const step = (s) => info.steps.push({ step: s, ms: Date.now() - t0 });

  const ws = await connect(wsUrl, 'ws', {
    createWebsocket: (url, protocols, opts) => {
      info.offered_subprotocols = protocols;
      wsSocket = new WS(url, protocols, opts.wsOptions);
      return wsSocket;
    },
  });
  info.subprotocol = wsSocket ? wsSocket.protocol : null;
  info.extensions = wsSocket ? wsSocket.extensions : null; // ws offers permessage-deflate
  info.ws_session_present = ws.connack.sessionPresent;
  step('ws connected');
  const tcp = await connect(tcpUrl, 'tcp');
  step('tcp connected');

  await subscribe(ws.client, topic, 'ws');
  await subscribe(tcp.client, topic, 'tcp');
  step('subscribed');

  const small = Buffer.from('hello from MQTT.js through wsgate ' + topic);
  const big = crypto.randomBytes(bigSize);
  const gotSmallWs = waitMessage(ws.client, topic, small, 'ws');
  const gotSmallTcp = waitMessage(tcp.client, topic, small, 'tcp');
  await publish(ws.client, topic, small, 'ws');
  await Promise.all([gotSmallWs, gotSmallTcp]);
  step('small message from ws received by ws and tcp');

  const gotBigWs = waitMessage(ws.client, topic, big, 'ws');
  const gotBigTcp = waitMessage(tcp.client, topic, big, 'tcp');
  await publish(ws.client, topic, big, 'ws');
  await Promise.all([gotBigWs, gotBigTcp]);
  step(bigSize + '-byte message from ws received by ws and tcp');

  const back = Buffer.from('hello from the broker side ' + topic);
  const gotBackWs = waitMessage(ws.client, topic, back, 'ws');
  const gotBackTcp = waitMessage(tcp.client, topic, back, 'tcp');
  await publish(tcp.client, topic, back, 'tcp');
  await Promise.all([gotBackWs, gotBackTcp]);
  step('message from tcp received by ws (and tcp)');

  info.unexpected_messages = ws.client.received.length + tcp.client.received.length;
  await end(ws.client, 'ws');
  await end(tcp.client, 'tcp');
  step('disconnected');
  info.ok = true;
  info.topic = topic;
  info.elapsed_ms = Date.now() - t0;
  result(info, 0);
}

const hardStop = setTimeout(() => {
  info.ok = false;
  info.error = 'mqtt_client.js: overall time limit reached';
  result(info, 1);
}, 6 * STEP_TIMEOUT_MS);
hardStop.unref();

main().catch((err) => {
  info.ok = false;
  info.error = err.message;
  if (wsSocket) info.subprotocol = wsSocket.protocol;
  result(info, 1);
});
