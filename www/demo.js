// wsgate demo page: one raw WebSocket connection to any route, an MQTT
// envelope panel on its own connection (through wsgate-client.js, the module
// clients/js/ publishes; www/ holds a copy that a unit test keeps identical),
// a shared live log, and a chart of /metrics. Plain browser JavaScript as an
// ES module, no build step, no libraries.
import { WsgateClient } from './wsgate-client.js';

(() => {
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------------------
  // close codes (RFC 6455 section 7.4 and what wsgate means by them)

  const CLOSE_CODES = {
    1000: ['Normal closure', 'the peer or the backend ended the connection cleanly'],
    1001: ['Going away', 'the gateway is shutting down or reloading, or the page is leaving'],
    1002: ['Protocol error', 'a malformed WebSocket frame'],
    1003: ['Unsupported data', 'a message type the endpoint cannot accept'],
    1005: ['No status', 'a close frame without a code'],
    1006: ['Abnormal closure', 'no close frame: the connection dropped, or the handshake was refused (HTTP 400/401/403/404/503 — browsers hide the status from scripts)'],
    1007: ['Invalid payload', 'a text message that is not valid UTF-8'],
    1008: ['Policy violation', 'over max_messages_per_s, or a client too slow to read'],
    1009: ['Message too big', 'a message over max_message_bytes'],
    1010: ['Extension required', 'the client wanted an extension the server did not offer'],
    1011: ['Internal error', 'the backend is unreachable or failed (the reason names the route)'],
    1012: ['Service restart', 'reconnect: a reload changed the MQTT broker this connection was served by'],
    1013: ['Try again later', 'the server is overloaded'],
    1014: ['Bad gateway', 'an upstream server answered badly'],
    1015: ['TLS handshake failed', 'reported locally, never sent on the wire'],
  };

  function closeMeaning(code) {
    const c = CLOSE_CODES[code];
    if (c) return c[0] + ': ' + c[1];
    if (code >= 3000 && code <= 3999) return 'Registered by a library or framework';
    if (code >= 4000 && code <= 4999) return 'Application-defined';
    return 'Unknown code';
  }

  // ---------------------------------------------------------------------------
  // small helpers

  const enc = new TextEncoder();
  const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

  function wsBase() {
    return (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host;
  }

  function clock(d) {
    const p = (n, w) => String(n).padStart(w || 2, '0');
    return p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()) + '.' + p(d.getMilliseconds(), 3);
  }

  function fmtSize(n) {
    if (n < 1024) return n + ' B';
    if (n < 1048576) return (n / 1024).toFixed(n < 10240 ? 1 : 0) + ' KiB';
    return (n / 1048576).toFixed(1) + ' MiB';
  }

  function toHex(bytes, max) {
    const n = Math.min(bytes.length, max);
    let s = '';
    for (let i = 0; i < n; i++) s += (i ? ' ' : '') + bytes[i].toString(16).padStart(2, '0');
    return bytes.length > n ? s + ' …' : s;
  }

  // "de ad be ef", "0xde,0xad", "dead:beef", "DEADBEEF" -> Uint8Array, or throws.
  function parseHex(text) {
    const cleaned = text.replace(/0x/gi, '').replace(/[\s,:;\-_]/g, '');
    if (!cleaned.length) throw new Error('enter at least one byte, e.g. 68 69 00 ff');
    const bad = cleaned.match(/[^0-9a-fA-F]/);
    if (bad) throw new Error('"' + bad[0] + '" is not a hex digit');
    if (cleaned.length % 2) throw new Error('odd number of hex digits (' + cleaned.length + '): each byte takes two');
    const out = new Uint8Array(cleaned.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(cleaned.substr(i * 2, 2), 16);
    return out;
  }

  function printable(s) {
    // eslint-disable-next-line no-control-regex
    return !/[\x00-\x08\x0e-\x1f\x7f]/.test(s);
  }

  function clip(s, max) {
    return s.length > max ? s.slice(0, max) + ' …(' + (s.length - max) + ' more)' : s;
  }

  // ---------------------------------------------------------------------------
  // MQTT topic filters (for hints only: the gateway decides)

  function validFilter(f) {
    if (!f.length || f.includes('\u0000')) return false;
    const lv = f.split('/');
    for (let i = 0; i < lv.length; i++) {
      const l = lv[i];
      if (l.includes('#') && (l !== '#' || i !== lv.length - 1)) return false;
      if (l.includes('+') && l !== '+') return false;
    }
    return true;
  }

  // Does every topic matched by `want` also match `allow`?
  function filterWithin(allow, want) {
    const A = allow.split('/');
    const W = want.split('/');
    for (let i = 0; ; i++) {
      if (i === A.length) return i === W.length;
      if (A[i] === '#') return !(i === 0 && W[0].startsWith('$'));
      if (i === W.length) return false;
      if (W[i] === '#') return false;
      if (A[i] === '+') {
        if (i === 0 && W[0].startsWith('$')) return false;
        continue;
      }
      if (A[i] !== W[i]) return false;
    }
  }

  // ---------------------------------------------------------------------------
  // routes (www/routes.json; the gateway has no routes endpoint)

  const FALLBACK_ROUTES = [
    { path: '/echo', name: 'echo', type: 'tcp', subprotocols: ['binary'],
      description: 'TCP echo backend' },
  ];
  const PALETTE = ['#2b5fd9', '#e0741b', '#14915a', '#b8329b', '#7a5af5', '#c0392b', '#138a9e'];
  const routeColors = new Map();
  function routeColor(name) {
    if (!routeColors.has(name)) routeColors.set(name, PALETTE[routeColors.size % PALETTE.length]);
    return routeColors.get(name);
  }

  let routes = [];

  function routeLabel(r) {
    const kind = r.type === 'mqtt' ? 'mqtt ' + (r.format || 'raw') : (r.type || '?');
    return r.path + '  (' + kind + ')';
  }

  async function loadRoutes() {
    try {
      const res = await fetch('routes.json', { cache: 'no-store' });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const j = await res.json();
      routes = Array.isArray(j.routes) ? j.routes : [];
    } catch (e) {
      routes = FALLBACK_ROUTES;
      log({ conn: 'page', dir: 'err', text: 'routes.json: ' + e.message + '; showing the default /echo route' });
    }
    for (const r of routes) routeColor(r.name || r.path);

    const sel = $('route');
    sel.textContent = '';
    routes.forEach((r, i) => sel.add(new Option(routeLabel(r), String(i))));
    sel.add(new Option('Other (edit the URL)', 'custom'));
    sel.value = '0';
    selectRoute();

    const msel = $('mqtt-route');
    msel.textContent = '';
    routes.forEach((r, i) => {
      if (r.type === 'mqtt' && r.format === 'envelope') msel.add(new Option(routeLabel(r), String(i)));
    });
    if (!msel.options.length) {
      msel.add(new Option('no envelope route in routes.json', ''));
      msel.disabled = true;
      $('mqtt-connect').disabled = true;
    }
    selectMqttRoute();
    document.body.dataset.routesLoaded = String(routes.length);
  }

  function selectRoute() {
    const v = $('route').value;
    if (v === 'custom') {
      $('route-desc').textContent = 'Type any path of the gateway into the URL.';
      $('url').focus();
      return;
    }
    const r = routes[Number(v)];
    if (!r) return;
    $('url').value = wsBase() + r.path;
    $('subprotocols').value = (r.subprotocols || []).join(', ');
    $('route-desc').textContent = r.description || '';
  }

  function mqttRoute() {
    const v = $('mqtt-route').value;
    return v === '' ? null : routes[Number(v)];
  }

  function selectMqttRoute() {
    const r = mqttRoute();
    if (!r) { $('mqtt-allow').textContent = ''; return; }
    const pub = ((r.publish || {}).allow || []).map((f) => '<code>' + esc(f) + '</code>').join(', ') || 'nothing';
    const sub = ((r.subscribe || {}).allow || []).map((f) => '<code>' + esc(f) + '</code>').join(', ') || 'nothing';
    $('mqtt-allow').innerHTML = 'Allowed here: publish to ' + pub + ', subscribe within ' + sub +
      (r.description ? '. ' + esc(r.description) : '.');
    checkSubFilter();
    checkPubTopic();
  }

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }

  // ---------------------------------------------------------------------------
  // the live log

  const MAX_ROWS = 500;
  const ARROWS = { in: ['←', 'received'], out: ['→', 'sent'], sys: ['•', 'event'], err: ['!', 'error'] };

  // entry: {conn, dir: in|out|sys|err, size?, kind?, text, code?}
  function log(entry) {
    const tbody = $('log');
    const tr = document.createElement('tr');
    tr.dataset.conn = entry.conn;
    tr.dataset.dir = entry.dir;
    if (entry.kind) tr.dataset.kind = entry.kind;
    if (entry.size !== undefined) tr.dataset.size = String(entry.size);
    if (entry.code !== undefined) tr.dataset.code = String(entry.code);
    if (entry.topic !== undefined) tr.dataset.topic = entry.topic;

    const td = (cls) => { const c = document.createElement('td'); c.className = cls; tr.append(c); return c; };
    const now = new Date();
    const t = td('t');
    const time = document.createElement('time');
    time.dateTime = now.toISOString();
    time.textContent = clock(now);
    t.append(time);

    const c = td('c');
    const dot = document.createElement('span');
    dot.className = 'conn-dot';
    dot.style.background = routeColor(entry.conn);
    dot.setAttribute('aria-hidden', 'true');
    c.append(dot, entry.conn);

    const d = td('d');
    const a = ARROWS[entry.dir] || ARROWS.sys;
    d.innerHTML = '<span aria-hidden="true">' + a[0] + '</span><span class="sr-only">' + a[1] + '</span>';

    td('s').textContent = entry.size === undefined ? '' : fmtSize(entry.size);

    const m = td('m');
    if (entry.kind) {
      const tag = document.createElement('span');
      tag.className = 'tag';
      tag.textContent = entry.kind;
      m.append(tag);
    }
    const body = document.createElement('span');
    body.className = 'body';
    body.textContent = entry.text;
    m.append(body);

    tbody.append(tr);
    while (tbody.rows.length > MAX_ROWS) tbody.deleteRow(0);
    if ($('autoscroll').checked) {
      const wrap = tbody.closest('.log-wrap');
      wrap.scrollTop = wrap.scrollHeight;
    }
    return tr;
  }

  function describeData(data) {
    if (typeof data === 'string') {
      return { kind: 'text', size: enc.encode(data).length, text: clip(data, 600) };
    }
    const bytes = new Uint8Array(data);
    let text = toHex(bytes, 48);
    try {
      const s = strictUtf8.decode(bytes);
      if (s.length && printable(s)) text += '   "' + clip(s, 300) + '"';
    } catch (e) { /* not UTF-8: hex only */ }
    return { kind: 'binary', size: bytes.length, text };
  }

  function logClose(conn, ev, opened) {
    const entry = {
      conn, dir: ev.code === 1000 ? 'sys' : 'err', code: ev.code,
      text: 'closed ' + ev.code + (ev.reason ? ' "' + ev.reason + '"' : '') + ' — ' + closeMeaning(ev.code) +
        (ev.wasClean ? '' : ' (not clean)'),
    };
    if (!opened) {
      entry.dir = 'err';
      entry.text += '. The connection never opened: see the gateway log for the HTTP status.';
    }
    log(entry);
  }

  function setBadge(id, st, text) {
    const b = $(id);
    b.dataset.state = st;
    b.textContent = text || st;
  }

  // ---------------------------------------------------------------------------
  // the raw connection

  let ws = null;
  let wsName = '';

  function connName(url) {
    try {
      const p = new URL(url).pathname;
      const r = routes.find((x) => x.path === p);
      return r ? (r.name || r.path) : p;
    } catch (e) { return url; }
  }

  function setConnUi(st) {
    const open = st === 'open';
    $('send').disabled = !open;
    $('connect').textContent = st === 'closed' ? 'Connect' : 'Disconnect';
    for (const id of ['route', 'url', 'subprotocols']) $(id).disabled = st !== 'closed';
  }

  function connect() {
    if (ws) { ws.close(1000, 'bye'); return; }
    const url = $('url').value.trim();
    const protos = $('subprotocols').value.split(',').map((s) => s.trim()).filter(Boolean);
    const name = connName(url);
    let sock;
    try {
      sock = new WebSocket(url, protos);
    } catch (e) {
      log({ conn: name, dir: 'err', text: 'cannot connect: ' + e.message });
      return;
    }
    sock.binaryType = 'arraybuffer';
    ws = sock;
    wsName = name;
    let opened = false;
    setBadge('conn-state', 'connecting');
    setConnUi('connecting');
    log({ conn: name, dir: 'sys', text: 'connecting to ' + url + (protos.length ? ' offering ' + protos.join(', ') : ' (no subprotocol offered)') });
    sock.onopen = () => {
      opened = true;
      setBadge('conn-state', 'open');
      setConnUi('open');
      log({ conn: name, dir: 'sys', text: 'open, subprotocol: ' + (sock.protocol || 'none') });
      $('message').focus();
    };
    sock.onmessage = (e) => {
      const d = describeData(e.data);
      log({ conn: name, dir: 'in', kind: d.kind, size: d.size, text: d.text });
    };
    sock.onclose = (e) => {
      logClose(name, e, opened);
      if (ws === sock) ws = null;
      setBadge('conn-state', opened && e.code === 1000 ? 'closed' : 'error', 'closed ' + e.code);
      setConnUi('closed');
    };
  }

  function sendMessage() {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    const hex = $('kind-hex').checked;
    const raw = $('message').value;
    let payload;
    if (hex) {
      try {
        payload = parseHex(raw);
      } catch (e) {
        $('message').setAttribute('aria-invalid', 'true');
        $('message-error').textContent = e.message;
        return;
      }
    } else {
      payload = raw;
    }
    $('message').removeAttribute('aria-invalid');
    $('message-error').textContent = '';
    const times = Number($('repeat').value) || 1;
    const d = describeData(hex ? payload.buffer : payload);
    for (let i = 0; i < times; i++) {
      ws.send(payload);
      log({ conn: wsName, dir: 'out', kind: d.kind, size: d.size, text: d.text });
    }
  }

  function setKind() {
    const hex = $('kind-hex').checked;
    $('message-label').textContent = hex ? 'Message (hex bytes)' : 'Message';
    const m = $('message');
    if (hex && !/^[0-9a-fA-F\s,:x]*$/.test(m.value)) m.value = toHex(enc.encode(m.value), 4096);
    m.removeAttribute('aria-invalid');
    $('message-error').textContent = '';
  }

  // ---------------------------------------------------------------------------
  // the MQTT envelope panel, on wsgate-client.js (clients/js/): the client
  // writes the requests, matches the replies, reconnects and subscribes again;
  // the page logs what it sends (the client's "frame" events) and what comes
  // back (the promises' outcomes and the messages).

  let mq = null; // the WsgateClient while the panel is connected (or reconnecting)
  let mqName = '';

  function setMqttUi() {
    for (const id of ['subscribe', 'unsubscribe', 'publish']) $(id).disabled = !mq;
    $('mqtt-connect').textContent = mq ? 'Disconnect' : 'Connect';
    $('mqtt-route').disabled = !!mq;
  }

  function renderSubs() {
    const ul = $('subs');
    ul.textContent = '';
    const subs = mq ? mq.subscriptions : [];
    if (!subs.length) {
      const li = document.createElement('li');
      li.className = 'empty';
      li.textContent = 'none';
      ul.append(li);
      return;
    }
    for (const f of subs) {
      const li = document.createElement('li');
      li.dataset.filter = f;
      li.append(f);
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = '×';
      b.setAttribute('aria-label', 'Unsubscribe from ' + f);
      b.onclick = () => mqUnsubscribe(f);
      li.append(b);
      ul.append(li);
    }
  }

  function result(ok, text) {
    const p = $('mqtt-result');
    p.className = 'result ' + (ok ? 'ok' : 'err');
    p.textContent = (ok ? '✓ ' : '✗ ') + text;
  }

  function mqttConnect() {
    if (mq) { mq.close(1000, 'bye'); return; }
    const r = mqttRoute();
    if (!r) return;
    const url = wsBase() + r.path;
    const name = r.name || r.path;
    let client;
    try {
      client = new WsgateClient(url, { protocols: r.subprotocols && r.subprotocols.length ? r.subprotocols : undefined });
    } catch (e) {
      log({ conn: name, dir: 'err', text: 'cannot connect: ' + e.message });
      return;
    }
    mq = client;
    mqName = name;
    let opened = false;
    setBadge('mqtt-state', 'connecting');
    setMqttUi();
    renderSubs();
    log({ conn: name, dir: 'sys', text: 'connecting to ' + url });
    client.on('open', () => {
      opened = true;
      setBadge('mqtt-state', 'open');
      log({ conn: name, dir: 'sys', text: 'open: JSON envelope requests enabled' +
        (client.subscriptions.length ? '; subscribing again to ' + client.subscriptions.join(', ') : '') });
    });
    client.on('frame', (f) => {
      if (f.dir !== 'out') return;
      let kind = 'request';
      try {
        const j = JSON.parse(f.data);
        kind = 'topic' in j ? 'publish' : ['subscribe', 'unsubscribe', 'refresh'].find((k) => k in j) || kind;
      } catch (e) { /* logged as is */ }
      log({ conn: name, dir: 'out', kind, size: enc.encode(f.data).length, text: f.data });
    });
    client.on('close', (e) => {
      logClose(name, e, e.wasOpen);
      if (e.willReconnect) {
        setBadge('mqtt-state', 'connecting', 'reconnecting');
        return;
      }
      if (mq === client) mq = null;
      renderSubs();
      setBadge('mqtt-state', opened && e.code === 1000 ? 'closed' : 'error', 'closed ' + e.code);
      setMqttUi();
    });
    client.on('reconnecting', (e) => {
      log({ conn: name, dir: 'sys', text: 'reconnecting in ' + e.delay + ' ms (attempt ' + e.attempt + ')' +
        (client.queued ? '; ' + client.queued + ' publish(es) wait' : '') });
    });
    client.on('resubscribed', (e) => {
      if (e.subscribed.length) log({ conn: name, dir: 'sys', text: 'subscriptions acked: ' + e.subscribed.join(', ') });
      for (const f of e.failed) log({ conn: name, dir: 'err', kind: 'error', text: 'subscription to ' + f.filter + ' lost: ' + f.error.code });
      renderSubs();
    });
    client.on('error', (err) => {
      const tr = log({ conn: name, dir: 'err', kind: 'error', text: err.code + ': ' + err.message });
      tr.dataset.errorCode = err.code;
    });
  }

  function describePayload(payload, binary) {
    if (binary) return { size: payload.length, text: '(bytes) ' + toHex(payload, 48) };
    const text = JSON.stringify(payload);
    return { size: enc.encode(typeof payload === 'string' ? payload : text).length, text };
  }

  function onMqttMessage(msg) {
    const d = describePayload(msg.payload, msg.binary);
    log({ conn: mqName, dir: 'in', kind: 'message', size: d.size, topic: msg.topic,
      text: msg.topic + '  ' + clip(d.text, 600) + (msg.retain ? '  (retained)' : '') });
  }

  // Logs how a request ended: the gateway's ack, or its error with the code.
  function track(what, promise) {
    const client = mq;
    promise.then(() => {
      renderSubs();
      log({ conn: mqName, dir: 'in', kind: 'ack', text: 'ack — ' + what });
      result(true, what + ' acknowledged');
    }, (err) => {
      if (mq === client) renderSubs();
      const text = (err.code || 'error') + ': ' + err.message + ' (' + what + ')';
      const tr = log({ conn: mqName, dir: 'err', kind: 'error', text });
      tr.dataset.errorCode = err.code || '';
      result(false, text);
    });
  }

  function mqSubscribe(filter, qos) {
    if (!mq || !filter) return;
    track('subscribe ' + filter, mq.subscribe(filter, onMqttMessage, { qos }));
    renderSubs();
  }

  function mqUnsubscribe(filter) {
    if (!mq || !filter) return;
    track('unsubscribe ' + filter, mq.unsubscribe(filter));
    renderSubs();
  }

  function hint(el, level, html) {
    el.className = 'hint' + (level ? ' ' + level : '');
    el.innerHTML = html;
  }

  function checkSubFilter() {
    const f = $('sub-filter').value.trim();
    const r = mqttRoute();
    const el = $('sub-check');
    if (!f || !r) { hint(el, '', ''); return; }
    const allow = (r.subscribe || {}).allow || [];
    if (!validFilter(f)) {
      hint(el, 'warn', 'Not a valid MQTT filter: the gateway will answer <code>bad_topic</code>.');
    } else if (allow.some((a) => filterWithin(a, f))) {
      hint(el, 'ok', 'Within the allow list.');
    } else {
      hint(el, 'warn', 'Outside the allow list (' + allow.map(esc).join(', ') + '): the gateway will answer <code>not_allowed</code>.');
    }
  }

  function checkPubTopic() {
    const t = $('pub-topic').value.trim();
    const r = mqttRoute();
    const el = $('pub-check');
    if (!t || !r) { hint(el, '', ''); return; }
    const allow = (r.publish || {}).allow || [];
    const maxQos = (r.publish || {}).qos;
    const qos = Number($('pub-qos').value);
    if (/[+#]/.test(t) || t.includes('\u0000')) {
      hint(el, 'warn', 'Wildcards are not allowed in a topic: the gateway will answer <code>bad_topic</code>.');
    } else if (!allow.some((a) => filterWithin(a, t))) {
      hint(el, 'warn', 'Outside the allow list (' + allow.map(esc).join(', ') + '): the gateway will answer <code>not_allowed</code>.');
    } else if (maxQos !== undefined && qos > maxQos) {
      hint(el, 'warn', 'QoS ' + qos + ' is above the route\'s ' + maxQos + ': the gateway will answer <code>qos_not_allowed</code>.');
    } else {
      hint(el, 'ok', 'Within the allow list.');
    }
  }

  function publish() {
    const topic = $('pub-topic').value.trim();
    const text = $('pub-payload').value;
    let payload = text;
    const trimmed = text.trim();
    if (trimmed) {
      try { payload = JSON.parse(trimmed); } catch (e) { payload = text; }
    }
    if (!mq || !topic) return;
    track('publish ' + topic, mq.publish(topic, payload, { qos: Number($('pub-qos').value), retain: $('pub-retain').checked }));
  }

  // ---------------------------------------------------------------------------
  // /metrics: parse Prometheus text, keep 60 s of history, draw a chart

  const LINE_RE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
  const LABEL_RE = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

  function parseProm(text) {
    const out = [];
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (!line || line[0] === '#') continue;
      const m = LINE_RE.exec(line);
      if (!m) continue;
      const labels = {};
      if (m[2]) {
        LABEL_RE.lastIndex = 0;
        let lm;
        while ((lm = LABEL_RE.exec(m[2]))) {
          labels[lm[1]] = lm[2].replace(/\\n/g, '\n').replace(/\\(["\\])/g, '$1');
        }
      }
      out.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return out;
  }

  const HISTORY_S = 60;
  const history = []; // {t (ms), rate: {route: msg/s}, active: {route: n}}
  let prev = null;    // {t, totals: {route: messages}}
  let paused = false;
  let metricsRoutes = [];
  let lastSummary = {};

  function summarize(samples) {
    const totals = {};
    const active = {};
    const brokers = {};
    for (const s of samples) {
      const r = s.labels.route;
      if (s.name === 'wsgate_messages_total' && r !== undefined) totals[r] = (totals[r] || 0) + s.value;
      else if (s.name === 'wsgate_connections_active' && r !== undefined) active[r] = s.value;
      else if (s.name === 'wsgate_mqtt_connected' && s.labels.broker !== undefined) brokers[s.labels.broker] = s.value;
    }
    return { totals, active, brokers };
  }

  async function pollMetrics() {
    if (paused) return;
    const status = $('metrics-status');
    try {
      const res = await fetch('/metrics', { cache: 'no-store' });
      if (!res.ok) throw new Error('HTTP ' + res.status);
      const text = await res.text();
      const now = performance.now();
      const sum = summarize(parseProm(text));
      const names = new Set([...routes.map((r) => r.name || r.path), ...Object.keys(sum.totals), ...Object.keys(sum.active)]);
      metricsRoutes = [...names];
      const rate = {};
      for (const n of metricsRoutes) {
        const cur = sum.totals[n] || 0;
        const before = prev && prev.totals[n] !== undefined ? prev.totals[n] : cur;
        const dt = prev ? (now - prev.t) / 1000 : 1;
        rate[n] = dt > 0 ? Math.max(0, (cur - before) / dt) : 0;
      }
      prev = { t: now, totals: sum.totals };
      history.push({ t: now, rate, active: sum.active });
      while (history.length && now - history[0].t > HISTORY_S * 1000 + 500) history.shift();
      lastSummary = sum;
      renderLegend(sum, rate);
      renderBrokers(sum.brokers);
      drawChart();
      status.textContent = 'updated ' + clock(new Date());
      status.className = 'hint';
      document.body.dataset.metricsPolls = String((Number(document.body.dataset.metricsPolls) || 0) + 1);
    } catch (e) {
      status.textContent = '/metrics: ' + e.message;
      status.className = 'hint warn';
    }
  }

  function renderLegend(sum, rate) {
    const tb = $('legend');
    tb.textContent = '';
    for (const n of metricsRoutes) {
      const tr = document.createElement('tr');
      tr.dataset.route = n;
      tr.dataset.active = String(sum.active[n] || 0);
      tr.dataset.rate = rate[n].toFixed(2);
      tr.dataset.total = String(sum.totals[n] || 0);
      tr.innerHTML = '<td><span class="swatch" aria-hidden="true"></span></td><td></td><td></td><td></td>';
      tr.cells[0].querySelector('.swatch').style.background = routeColor(n);
      tr.cells[0].append(n);
      tr.cells[1].textContent = String(sum.active[n] || 0);
      tr.cells[2].textContent = rate[n] < 10 ? rate[n].toFixed(1) : String(Math.round(rate[n]));
      tr.cells[3].textContent = String(sum.totals[n] || 0);
      tb.append(tr);
    }
    const parts = metricsRoutes.map((n) => n + ': ' + (sum.active[n] || 0) + ' active, ' + rate[n].toFixed(1) + ' messages/s');
    $('chart').setAttribute('aria-label', 'Messages per second and active connections per route, last minute. Now: ' + (parts.join('; ') || 'no routes'));
  }

  function renderBrokers(brokers) {
    const names = Object.keys(brokers);
    const el = $('brokers');
    if (!names.length) {
      el.textContent = routes.some((r) => r.type === 'mqtt') ? 'MQTT brokers: not reported by this gateway.' : '';
      return;
    }
    el.textContent = 'MQTT brokers: ' + names.map((b) => b + ' ' + (brokers[b] ? 'connected' : 'disconnected')).join(', ');
  }

  function niceMax(v) {
    if (v <= 1) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function drawChart() {
    const cv = $('chart');
    const dpr = window.devicePixelRatio || 1;
    const w = cv.clientWidth;
    const h = cv.clientHeight;
    if (!w || !h) return;
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr);
      cv.height = Math.round(h * dpr);
    }
    const g = cv.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.documentElement);
    const ink = css.getPropertyValue('--muted').trim() || '#666';
    const line = css.getPropertyValue('--line').trim() || '#ddd';
    g.font = '11px system-ui, sans-serif';

    const left = 40, right = 8, gap = 22;
    const top1 = 16, h1 = Math.round((h - top1 - gap - 20) * 0.64);
    const top2 = top1 + h1 + gap, h2 = h - top2 - 18;
    const now = history.length ? history[history.length - 1].t : performance.now();
    // The window grows from 20 s to 60 s as history fills, so a fresh page shows a chart.
    const spanS = Math.min(HISTORY_S, Math.max(20, Math.ceil(history.length ? (now - history[0].t) / 1000 : 0)));
    const xOf = (t) => left + (w - left - right) * (1 - (now - t) / (spanS * 1000));

    const panel = (top, ht, title, key, step) => {
      let max = 0;
      for (const s of history) for (const n of metricsRoutes) max = Math.max(max, s[key][n] || 0);
      max = niceMax(max);
      g.fillStyle = ink;
      g.textAlign = 'left';
      g.textBaseline = 'bottom';
      g.fillText(title, left, top - 3);
      g.strokeStyle = line;
      g.lineWidth = 1;
      g.textAlign = 'right';
      g.textBaseline = 'middle';
      for (let i = 0; i <= 2; i++) {
        const y = Math.round(top + ht - (ht * i) / 2) + 0.5;
        g.beginPath(); g.moveTo(left, y); g.lineTo(w - right, y); g.stroke();
        const v = (max * i) / 2;
        g.fillText(Number.isInteger(v) ? String(v) : v.toFixed(1), left - 6, y);
      }
      g.save();
      g.beginPath();
      g.rect(left, top - 2, w - left - right, ht + 4);
      g.clip();
      metricsRoutes.forEach((n, idx) => {
        // Step lines at equal values would hide each other: nudge each route by 2 px.
        const dy = step ? idx * 2 : 0;
        const pts = history.map((s) => [xOf(s.t), top + ht - (ht * (s[key][n] || 0)) / max - dy]);
        if (!pts.length) return;
        g.strokeStyle = routeColor(n);
        g.lineWidth = 2;
        g.lineJoin = 'round';
        g.beginPath();
        pts.forEach(([x, y], i) => {
          if (!i) g.moveTo(x, y);
          else if (step) { g.lineTo(x, pts[i - 1][1]); g.lineTo(x, y); } else g.lineTo(x, y);
        });
        g.stroke();
        if (!step) {
          g.globalAlpha = 0.12;
          g.fillStyle = routeColor(n);
          g.lineTo(pts[pts.length - 1][0], top + ht);
          g.lineTo(pts[0][0], top + ht);
          g.closePath();
          g.fill();
          g.globalAlpha = 1;
        }
      });
      g.restore();
    };
    panel(top1, h1, 'messages/s (in + out)', 'rate', false);
    panel(top2, h2, 'active connections', 'active', true);
    g.fillStyle = ink;
    g.textBaseline = 'alphabetic';
    g.textAlign = 'left';
    g.fillText('−' + spanS + ' s', left, h - 3);
    g.textAlign = 'center';
    g.fillText('−' + Math.round(spanS / 2) + ' s', left + (w - left - right) / 2, h - 3);
    g.textAlign = 'right';
    g.fillText('now', w - right, h - 3);
  }

  function startMetrics() {
    const tick = async () => {
      await pollMetrics();
      setTimeout(tick, 1000);
    };
    tick();
    window.addEventListener('resize', drawChart);
  }

  // ---------------------------------------------------------------------------
  // wiring

  function wire() {
    const dl = $('close-codes');
    for (const [code, [name, what]] of Object.entries(CLOSE_CODES)) {
      const dt = document.createElement('dt');
      dt.textContent = code;
      const dd = document.createElement('dd');
      dd.textContent = name + ' — ' + what;
      dl.append(dt, dd);
    }

    $('route').addEventListener('change', selectRoute);
    $('conn-form').addEventListener('submit', (e) => { e.preventDefault(); connect(); });
    $('send-form').addEventListener('submit', (e) => { e.preventDefault(); sendMessage(); });
    $('message').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        if (!$('send').disabled) $('send-form').requestSubmit();
      }
    });
    $('message').addEventListener('input', () => {
      $('message').removeAttribute('aria-invalid');
      $('message-error').textContent = '';
    });
    for (const r of document.querySelectorAll('input[name=kind]')) r.addEventListener('change', setKind);

    $('mqtt-route').addEventListener('change', selectMqttRoute);
    $('mqtt-conn-form').addEventListener('submit', (e) => { e.preventDefault(); mqttConnect(); });
    $('sub-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const f = $('sub-filter').value.trim();
      mqSubscribe(f, Number($('sub-qos').value));
    });
    $('unsubscribe').addEventListener('click', () => mqUnsubscribe($('sub-filter').value.trim()));
    $('pub-form').addEventListener('submit', (e) => { e.preventDefault(); publish(); });
    $('pub-payload').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !$('publish').disabled) {
        e.preventDefault();
        $('pub-form').requestSubmit();
      }
    });
    $('sub-filter').addEventListener('input', checkSubFilter);
    $('pub-topic').addEventListener('input', checkPubTopic);
    $('pub-qos').addEventListener('change', checkPubTopic);

    $('clear-log').addEventListener('click', () => { $('log').textContent = ''; });
    $('metrics-pause').addEventListener('click', () => {
      paused = !paused;
      $('metrics-pause').setAttribute('aria-pressed', String(paused));
      $('metrics-pause').textContent = paused ? 'Resume' : 'Pause';
      $('metrics-status').textContent = paused ? 'paused' : 'resuming…';
      if (!paused) prev = null;
    });
  }

  // For the browser tests and the curious: the page's parsed view of things.
  window.wsgateDemo = {
    parseProm, parseHex, filterWithin, closeMeaning,
    get routes() { return routes; },
    get metrics() { return lastSummary; },
  };

  wire();
  loadRoutes().then(startMetrics);
})();
