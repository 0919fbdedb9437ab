// wsgate-client.js - a client for wsgate's MQTT routes with "format": "envelope"
// (docs/MQTT.md), for browsers and Node: subscribe with a handler, publish, and
// promises settled by the gateway's {"ack"} or {"error"}. It reconnects with
// backoff and jitter, subscribes again what it held, asks token() again for
// every connection and refreshes the token before its "exp". No dependencies;
// the API is in docs/js-client.md. What it leaves to the gateway: topic and ACL
// checks (a refused request rejects with the gateway's error code).

const DEFAULTS = {
  token: null, // () => string | null | Promise<…>: a JWT, sent as ?token=
  tokenParam: 'token',
  protocols: undefined, // Sec-WebSocket-Protocol offers, if the route wants some
  WebSocket: undefined, // the WebSocket class (Node: require('ws')); default globalThis.WebSocket
  reconnect: true,
  minDelay: 500, // ms before the first reconnect; doubles per attempt…
  maxDelay: 15000, // …up to this
  factor: 2,
  jitter: 0.2, // each delay is scaled by a random factor in [1 - jitter, 1 + jitter]
  maxQueued: 100, // publishes held while not connected; past it a publish is dropped
  requestTimeout: 0, // ms to wait for an ack; 0 waits as long as the gateway takes
  refreshBefore: 60, // s before the token's exp to send {"refresh"}
  refreshTimeout: 10000, // ms to wait for the refresh's reply before reconnecting instead
};

const EVENTS = ['open', 'close', 'reconnecting', 'resubscribed', 'refresh', 'error', 'frame'];

/** An error from the gateway ({"error": {"code", "message"}}) or from the client. */
export class WsgateError extends Error {
  constructor(code, message, extra) {
    super(message || code);
    this.name = 'WsgateError';
    this.code = code;
    if (extra) Object.assign(this, extra);
  }
}

/** Does an MQTT topic filter match a topic name? (MQTT 3.1.1 section 4.7) */
export function topicMatches(filter, topic) {
  const f = filter.split('/');
  const t = topic.split('/');
  // Wildcards at the first level never match topics starting with '$'.
  if (t[0].startsWith('$') && (f[0] === '#' || f[0] === '+')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** The "exp" claim of a JWT in ms since the epoch, or null (not verified: the gateway does that). */
export function tokenExpiry(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const exp = JSON.parse(json).exp;
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : null;
  } catch (e) {
    return null;
  }
}

function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromBase64(text) {
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function asBytes(payload) {
  if (payload instanceof ArrayBuffer) return new Uint8Array(payload);
  if (ArrayBuffer.isView(payload)) return new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  return null;
}

// setTimeout takes at most 2^31-1 ms; a token valid for longer is looked at again then.
const MAX_TIMER_MS = 0x7fffffff;

// An exception in a user's handler must not break the client's own state: it is
// reported the way a browser reports one from an event listener.
function reportLater(err) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
  else setTimeout(() => { throw err; }, 0);
}

export class WsgateClient {
  /**
   * @param {string} url ws:// or wss:// URL of an envelope route
   * @param {object} [options] see DEFAULTS above and docs/js-client.md
   */
  constructor(url, options) {
    let parsed = null;
    try { parsed = new URL(url); } catch (e) { /* reported below */ }
    if (typeof url !== 'string' || !parsed || (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:')) {
      throw new TypeError('WsgateClient: url must be a ws:// or wss:// URL, got ' + JSON.stringify(url));
    }
    const o = Object.assign({}, DEFAULTS, options || {});
    for (const k of Object.keys(options || {})) {
      if (!(k in DEFAULTS)) throw new TypeError('WsgateClient: unknown option "' + k + '"');
    }
    if (o.token !== null && typeof o.token !== 'function') throw new TypeError('WsgateClient: token must be a function');
    for (const k of ['minDelay', 'maxDelay', 'factor', 'jitter', 'maxQueued', 'requestTimeout', 'refreshBefore', 'refreshTimeout']) {
      if (typeof o[k] !== 'number' || !(o[k] >= 0)) throw new TypeError('WsgateClient: ' + k + ' must be a number >= 0');
    }
    if (o.jitter > 1) throw new TypeError('WsgateClient: jitter must be within 0..1');
    this._WS = o.WebSocket || globalThis.WebSocket;
    if (typeof this._WS !== 'function') {
      throw new TypeError('WsgateClient: no WebSocket class here; pass options.WebSocket (e.g. the "ws" package in Node)');
    }
    this._url = url;
    this._o = o;
    this._listeners = new Map(EVENTS.map((e) => [e, new Set()]));
    this._ws = null;
    this._state = 'connecting';
    this._nextId = 1;
    this._pending = new Map(); // id -> request in flight on the current socket
    this._subs = new Map(); // filter -> {qos, handlers: Set, acked, waiters: [{resolve, reject}]}
    this._queue = []; // publishes waiting for a connection: {frame, resolve, reject}
    this._attempt = 0;
    this._retryTimer = null;
    this._refreshTimer = null;
    this._token = null; // the token the current connection was opened (or refreshed) with
    this._freshToken = null; // a token a failed refresh obtained: the next connect uses it
    this._closed = false;
    // Connect from a task of its own, so that listeners added right after the
    // constructor see the first open.
    setTimeout(() => this._connect(), 0);
  }

  /** "connecting", "open", "reconnecting" (waiting out a delay) or "closed" (after close()). */
  get state() { return this._state; }

  /** The filters held (subscribed or being subscribed), in subscription order. */
  get subscriptions() { return [...this._subs.keys()]; }

  /** How many publishes wait for a connection. */
  get queued() { return this._queue.length; }

  /** Adds a listener; returns a function that removes it. */
  on(type, fn) {
    const set = this._listeners.get(type);
    if (!set) throw new TypeError('WsgateClient: no event "' + type + '" (one of ' + EVENTS.join(', ') + ')');
    if (typeof fn !== 'function') throw new TypeError('WsgateClient: listener must be a function');
    set.add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  /**
   * Subscribes `handler(msg)` to a topic filter. Resolves on the gateway's ack,
   * rejects with its error (err.code "not_allowed", "bad_topic", …). Held across
   * reconnects. A filter already held gets one more handler and no new request.
   */
  subscribe(filter, handler, options) {
    if (typeof filter !== 'string' || !filter) return Promise.reject(new TypeError('subscribe: filter must be a non-empty string'));
    if (typeof handler !== 'function') return Promise.reject(new TypeError('subscribe: handler must be a function'));
    if (this._closed) return Promise.reject(new WsgateError('closed', 'the client was closed'));
    const qos = (options && options.qos) || 0;
    let sub = this._subs.get(filter);
    if (sub) {
      sub.handlers.add(handler);
      if (sub.acked) return Promise.resolve();
      return new Promise((resolve, reject) => sub.waiters.push({ resolve, reject }));
    }
    sub = { qos, handlers: new Set([handler]), acked: false, waiters: [] };
    this._subs.set(filter, sub);
    const p = new Promise((resolve, reject) => sub.waiters.push({ resolve, reject }));
    if (this._state === 'open') this._sendSubscribe(filter, sub);
    return p;
  }

  /**
   * Removes `handler` from a filter (every handler when none is given); once no
   * handler is left the gateway is asked to unsubscribe. Messages stop at once.
   */
  unsubscribe(filter, handler) {
    const sub = this._subs.get(filter);
    if (!sub) return Promise.resolve();
    if (handler) {
      sub.handlers.delete(handler);
      if (sub.handlers.size) return Promise.resolve();
    }
    this._subs.delete(filter);
    const err = new WsgateError('unsubscribed', 'unsubscribed from ' + filter + ' before the ack');
    for (const w of sub.waiters) w.reject(err);
    // Not connected: the next connection simply does not subscribe it again.
    if (this._state !== 'open') return Promise.resolve();
    return this._request({ unsubscribe: filter }, 'unsubscribe');
  }

  /**
   * Publishes `payload` to `topic`: a string as its UTF-8 text, an ArrayBuffer or
   * typed array as bytes (base64 on the wire), anything else as its JSON text.
   * Resolves on the gateway's ack (QoS >= 1: after the broker's PUBACK).
   * While not connected it waits in a queue of at most maxQueued publishes;
   * past that it rejects at once with err.code "dropped".
   */
  publish(topic, payload, options) {
    if (typeof topic !== 'string' || !topic) return Promise.reject(new TypeError('publish: topic must be a non-empty string'));
    if (payload === undefined) return Promise.reject(new TypeError('publish: payload is required'));
    if (this._closed) return Promise.reject(new WsgateError('closed', 'the client was closed'));
    const frame = { topic };
    const bytes = asBytes(payload);
    if (bytes) {
      frame.payload = toBase64(bytes);
      frame.encoding = 'base64';
    } else {
      frame.payload = payload;
    }
    if (options && options.qos !== undefined) frame.qos = options.qos;
    if (options && options.retain !== undefined) frame.retain = !!options.retain;
    if (this._state === 'open') return this._request(frame, 'publish');
    return new Promise((resolve, reject) => {
      const item = { frame, resolve, reject };
      if (!this._enqueue(item)) this._drop(item);
    });
  }

  /** Closes for good: no reconnect; every pending promise rejects with err.code "closed". */
  close(code, reason) {
    if (this._closed) return;
    this._closed = true;
    this._state = 'closed';
    clearTimeout(this._retryTimer);
    clearTimeout(this._refreshTimer);
    this._failEverything(new WsgateError('closed', 'the client was closed'));
    const ws = this._ws;
    if (ws && ws.readyState <= 1) ws.close(code || 1000, reason || '');
  }

  // -------------------------------------------------------------------------
  // connection

  async _connect() {
    if (this._closed) return;
    this._state = 'connecting';
    let token = null;
    if (this._freshToken) {
      token = this._freshToken;
      this._freshToken = null;
    } else if (this._o.token) {
      try {
        token = await this._o.token();
      } catch (e) {
        this._emit('error', new WsgateError('token_failed', 'token() failed: ' + (e && e.message || e), { cause: e }));
        this._retry();
        return;
      }
    }
    if (this._closed) return;
    let url = this._url;
    if (token) {
      const hash = url.indexOf('#');
      if (hash >= 0) url = url.slice(0, hash);
      url += (url.includes('?') ? '&' : '?') + encodeURIComponent(this._o.tokenParam) + '=' + encodeURIComponent(token);
    }
    let ws;
    try {
      ws = this._o.protocols ? new this._WS(url, this._o.protocols) : new this._WS(url);
    } catch (e) {
      this._emit('error', new WsgateError('connect_failed', String(e && e.message || e), { cause: e }));
      this._retry();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    ws.onopen = () => { if (ws === this._ws) this._onOpen(token); };
    ws.onmessage = (ev) => { if (ws === this._ws) this._onMessage(ev.data); };
    ws.onclose = (ev) => { if (ws === this._ws) this._onClose(ev); };
    ws.onerror = () => {}; // a close event follows; its code says more
  }

  _onOpen(token) {
    if (this._closed) return;
    this._state = 'open';
    this._attempt = 0;
    this._token = token;
    this._scheduleRefresh();
    // Subscriptions first, so that messages published from the queue (which the
    // gateway handles in order) reach the client's own subscriptions too; both
    // before "open", whose listeners may subscribe and publish themselves.
    const settled = [...this._subs].map(([f, sub]) => this._sendSubscribe(f, sub));
    Promise.all(settled).then((results) => {
      if (this._closed) return;
      const failed = results.filter((r) => r.error);
      this._emit('resubscribed', {
        subscribed: results.filter((r) => !r.error).map((r) => r.filter),
        failed: failed.map((r) => ({ filter: r.filter, error: r.error })),
      });
    });
    const queue = this._queue;
    this._queue = [];
    for (const item of queue) this._sendQueued(item);
    this._emit('open', { protocol: this._ws.protocol || '' });
  }

  _onClose(ev) {
    const code = ev.code;
    const reason = ev.reason || '';
    this._ws = null;
    clearTimeout(this._refreshTimer);
    const wasOpen = this._state === 'open';
    // Requests in flight: publishes go back to the head of the queue (sent again
    // on the next connection: at least once), subscriptions are sent again
    // anyway, an unsubscribe is done (a new connection does not hold the filter).
    const back = [];
    for (const req of this._pending.values()) {
      clearTimeout(req.timer);
      if (req.kind === 'publish') back.push(req.item);
      else if (req.kind === 'unsubscribe') req.resolve();
    }
    this._pending.clear();
    if (back.length) {
      const all = back.concat(this._queue);
      this._queue = all.slice(0, this._o.maxQueued);
      for (const item of all.slice(this._o.maxQueued)) this._drop(item);
    }
    const willReconnect = !this._closed && this._o.reconnect;
    if (!willReconnect && !this._closed) {
      this._closed = true;
      this._failEverything(new WsgateError('disconnected', 'the connection closed (' + code + ') and reconnect is off'));
    }
    if (this._closed) this._state = 'closed';
    this._emit('close', { code, reason, wasClean: !!ev.wasClean, wasOpen, willReconnect });
    if (willReconnect) this._retry();
  }

  _retry() {
    if (this._closed) return;
    if (!this._o.reconnect) {
      this.close();
      return;
    }
    this._attempt++;
    let delay;
    if (this._freshToken) {
      delay = 0; // a refresh the gateway refused: come back at once with the new token
    } else {
      const base = Math.min(this._o.maxDelay, this._o.minDelay * Math.pow(this._o.factor, this._attempt - 1));
      delay = Math.round(base * (1 - this._o.jitter + 2 * this._o.jitter * Math.random()));
    }
    this._state = 'reconnecting';
    this._emit('reconnecting', { attempt: this._attempt, delay });
    clearTimeout(this._retryTimer);
    this._retryTimer = setTimeout(() => this._connect(), delay);
  }

  _failEverything(err) {
    for (const req of this._pending.values()) {
      clearTimeout(req.timer);
      if (req.kind !== 'subscribe' && req.kind !== 'refresh') req.reject(err);
    }
    this._pending.clear();
    for (const sub of this._subs.values()) for (const w of sub.waiters) w.reject(err);
    this._subs.clear();
    const queue = this._queue;
    this._queue = [];
    for (const item of queue) item.reject(err);
  }

  // -------------------------------------------------------------------------
  // requests and replies

  _send(frame) {
    const text = JSON.stringify(frame);
    this._emit('frame', { dir: 'out', data: text });
    this._ws.send(text);
  }

  // Sends a request with a fresh id; the promise settles on its ack or error.
  _request(frame, kind, extra) {
    return new Promise((resolve, reject) => {
      const id = this._nextId++;
      const req = Object.assign({ kind, resolve, reject, timer: null }, extra || {});
      if (kind === 'publish' && !req.item) req.item = { frame, resolve, reject };
      const timeout = kind === 'refresh' ? this._o.refreshTimeout : this._o.requestTimeout;
      if (timeout > 0) {
        req.timer = setTimeout(() => {
          if (this._pending.get(id) !== req) return;
          this._pending.delete(id);
          this._settle(req, new WsgateError('timeout', 'no reply from the gateway within ' + timeout + ' ms', { request: id }));
        }, timeout);
      }
      this._pending.set(id, req);
      this._send(Object.assign({}, frame, { id }));
    });
  }

  _sendQueued(item) {
    this._request(item.frame, 'publish', { item }).then(item.resolve, item.reject);
  }

  _enqueue(item) {
    if (this._queue.length >= this._o.maxQueued) return false;
    this._queue.push(item);
    return true;
  }

  _drop(item) {
    item.reject(new WsgateError('dropped', 'publish to ' + item.frame.topic + ' dropped: ' +
      this._o.maxQueued + ' publishes already wait for a connection (maxQueued)'));
  }

  // Subscribes on the current socket; resolves (never rejects) with
  // {filter, error?} once the gateway has answered, for the "resubscribed" event.
  _sendSubscribe(filter, sub) {
    const frame = { subscribe: filter };
    if (sub.qos) frame.qos = sub.qos;
    return this._request(frame, 'subscribe', { filter, sub }).then(
      () => ({ filter }),
      (error) => ({ filter, error }));
  }

  // One reply for a request: resolve/reject it, and keep the client's own
  // view (subscriptions, token) in step with what the gateway said.
  _settle(req, error) {
    if (req.kind === 'subscribe') {
      const { sub, filter } = req;
      if (this._subs.get(filter) === sub) {
        if (error) {
          this._subs.delete(filter);
          // A filter refused on a reconnect has nobody waiting: say it.
          if (!sub.waiters.length) this._emit('error', error);
        } else {
          sub.acked = true;
        }
        const waiters = sub.waiters;
        sub.waiters = [];
        for (const w of waiters) (error ? w.reject(error) : w.resolve());
      }
      if (error) req.reject(error); else req.resolve();
      return;
    }
    if (req.kind === 'refresh') {
      this._onRefreshReply(req.token, error);
      req.resolve();
      return;
    }
    if (error) req.reject(error); else req.resolve();
  }

  _onMessage(data) {
    this._emit('frame', { dir: 'in', data });
    if (typeof data !== 'string') return; // the gateway sends envelopes as text
    let j;
    try {
      j = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (!j || typeof j !== 'object') return;
    if ('ack' in j) {
      const req = this._pending.get(j.ack);
      if (req) {
        this._pending.delete(j.ack);
        clearTimeout(req.timer);
        this._settle(req, null);
      }
      return;
    }
    if ('error' in j) {
      const e = j.error || {};
      const err = new WsgateError(e.code || 'error', e.message || e.code || 'error', { request: e.request });
      const req = e.request !== undefined ? this._pending.get(e.request) : undefined;
      if (req) {
        this._pending.delete(e.request);
        clearTimeout(req.timer);
        if (req.filter !== undefined) err.filter = req.filter;
        if (req.kind === 'publish') err.topic = req.item.frame.topic;
        this._settle(req, err);
      } else {
        this._emit('error', err);
      }
      return;
    }
    if (typeof j.topic === 'string') this._dispatch(j);
  }

  _dispatch(j) {
    const binary = j.encoding === 'base64';
    let payload = j.payload;
    if (binary) {
      try { payload = fromBase64(j.payload); } catch (e) { return; }
    }
    const msg = { topic: j.topic, payload, binary, retain: j.retain === true };
    // One call per handler even when several held filters match the topic.
    const called = new Set();
    for (const [filter, sub] of this._subs) {
      if (!topicMatches(filter, j.topic)) continue;
      for (const h of sub.handlers) {
        if (called.has(h)) continue;
        called.add(h);
        try { h(msg); } catch (e) { reportLater(e); }
      }
    }
  }

  // -------------------------------------------------------------------------
  // token refresh (SPEC-2 A: {"refresh": "<jwt>", "id": N} before exp)

  _scheduleRefresh() {
    clearTimeout(this._refreshTimer);
    const exp = tokenExpiry(this._token);
    if (exp === null || !this._o.token) return;
    const left = exp - Date.now();
    // Refresh refreshBefore ahead, or halfway through a token shorter than that.
    let wait = left - this._o.refreshBefore * 1000;
    if (wait < left / 2) wait = left / 2;
    wait = Math.min(Math.max(wait, 1000), MAX_TIMER_MS);
    this._refreshTimer = setTimeout(() => this._refresh(), wait);
  }

  async _refresh() {
    if (this._state !== 'open') return;
    const ws = this._ws;
    let token;
    try {
      token = await this._o.token();
    } catch (e) {
      this._emit('error', new WsgateError('token_failed', 'token() failed: ' + (e && e.message || e), { cause: e }));
      token = null;
    }
    if (this._state !== 'open' || ws !== this._ws) return;
    const oldExp = tokenExpiry(this._token);
    const newExp = tokenExpiry(token);
    if (!token || token === this._token || (newExp !== null && oldExp !== null && newExp <= oldExp)) {
      // Nothing newer yet: ask again later; if the gateway closes with 4401
      // meanwhile, the reconnect asks token() anyway.
      const left = oldExp === null ? 0 : oldExp - Date.now();
      if (left > 2000) this._refreshTimer = setTimeout(() => this._refresh(), Math.min(30000, left / 2));
      return;
    }
    this._request({ refresh: token }, 'refresh', { token });
  }

  _onRefreshReply(token, error) {
    if (!error) {
      this._token = token;
      this._emit('refresh', { ok: true });
      this._scheduleRefresh();
      return;
    }
    // The gateway would not move the deadline (or does not know "refresh"):
    // reconnect now with the new token instead of waiting for the 4401.
    this._emit('refresh', { ok: false, error });
    this._freshToken = token;
    const ws = this._ws;
    if (ws) ws.close(1000, 'token refresh');
  }

  _emit(type, detail) {
    for (const fn of [...this._listeners.get(type)]) {
      try { fn(detail); } catch (e) { reportLater(e); }
    }
  }
}

export default WsgateClient;
