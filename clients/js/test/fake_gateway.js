// fake_gateway.js - a WebSocket server on 127.0.0.1 that speaks just enough of
// wsgate's envelope protocol for the client's unit tests: it records every
// connection (its URL, so the token it came with) and every request, and
// answers each with `reply(conn, request)` (default: ack every id). The real
// gateway is tested in tests/browser/test_js_client.py.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
// `ws` comes from tests/clients (one package.json for the npm packages tests use).
const clientsRequire = createRequire(path.join(here, '..', '..', '..', 'tests', 'clients', 'package.json'));
export const WebSocket = clientsRequire('ws');
const { WebSocketServer } = WebSocket;

export class FakeGateway {
  constructor() {
    this.connections = [];
    this.reply = (conn, req) => { if (req.id !== undefined) conn.send({ ack: req.id }); };
    this.waiters = [];
  }

  async start() {
    this.wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((resolve, reject) => {
      this.wss.once('listening', resolve);
      this.wss.once('error', reject);
    });
    this.port = this.wss.address().port;
    this.url = 'ws://127.0.0.1:' + this.port + '/bus';
    this.wss.on('connection', (ws, req) => {
      const conn = {
        ws,
        url: req.url,
        token: new URL(req.url, 'http://x').searchParams.get('token'),
        requests: [],
        send: (obj) => ws.send(JSON.stringify(obj)),
        close: (code, reason) => ws.close(code, reason),
      };
      this.connections.push(conn);
      ws.on('message', (data, isBinary) => {
        const req = isBinary ? { binary: data } : JSON.parse(data.toString());
        conn.requests.push(req);
        this._wake();
        this.reply(conn, req);
      });
      this._wake();
    });
    return this;
  }

  // Resolves once pred() is true (checked after every connection and request).
  until(what, pred, timeoutMs = 4000) {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error('timed out waiting for ' + what));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  _wake() {
    for (const w of [...this.waiters]) {
      if (w.pred()) {
        clearTimeout(w.timer);
        this.waiters = this.waiters.filter((x) => x !== w);
        w.resolve();
      }
    }
  }

  get last() { return this.connections[this.connections.length - 1]; }

  stop() {
    for (const c of this.connections) c.ws.terminate();
    return new Promise((resolve) => this.wss.close(() => resolve()));
  }
}

// A JWT-shaped token (unsigned: the client reads "exp" only).
export function fakeJwt(claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return b64({ alg: 'HS256', typ: 'JWT' }) + '.' + b64(claims) + '.c2ln';
}

export function nextEvent(client, type, timeoutMs = 4000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error('no "' + type + '" event within ' + timeoutMs + ' ms')); }, timeoutMs);
    const off = client.on(type, (d) => { clearTimeout(timer); off(); resolve(d); });
  });
}
