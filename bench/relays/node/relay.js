// relay.js - bench/run.sh's Node peer: the WebSocket <-> TCP relay a developer would write
// in Node instead of C, on the npm package ws (locked in package-lock.json).
//
//   npm ci && node relay.js --listen 127.0.0.1:8082 --backend 127.0.0.1:9000 [--deflate 1]
//
// Each WebSocket (any path, subprotocol "binary" accepted) gets its own backend TCP
// connection: binary messages' payloads are written to the backend, whatever the
// backend sends goes back as one binary message per 'data' chunk. Backpressure both
// ways: the WebSocket is paused while the backend's write buffer is full (write()
// returned false) until 'drain'; the backend is paused while more than HIGH bytes wait
// to go to the client (ws.bufferedAmount) until the sends have been written out.
// --deflate 1 turns on ws's perMessageDeflate, with threshold 0: ws's default (1 KiB)
// would leave the small messages of a JSON stream uncompressed.
'use strict';

const net = require('net');
const { WebSocketServer } = require('ws');

const HIGH = 1 << 20; // bytes queued towards the client before the backend is paused

function hostPort(s) {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

const opts = { listen: '127.0.0.1:8082', backend: '127.0.0.1:9000', deflate: '0' };
for (let i = 2; i < process.argv.length; i += 2) {
  const key = process.argv[i].replace(/^--?/, '');
  if (!(key in opts) || i + 1 >= process.argv.length) {
    console.error('usage: node relay.js [--listen HOST:PORT] [--backend HOST:PORT] [--deflate 0|1]');
    process.exit(2);
  }
  opts[key] = process.argv[i + 1];
}
const backend = hostPort(opts.backend);

const wss = new WebSocketServer({
  ...hostPort(opts.listen),
  perMessageDeflate: opts.deflate === '1' ? { threshold: 0 } : false,
  handleProtocols: (protocols) => (protocols.has('binary') ? 'binary' : false),
});

wss.on('connection', (ws) => {
  const tcp = net.connect(backend);
  tcp.setNoDelay(true);
  let tcpPaused = false;

  // client -> backend
  ws.on('message', (data) => {
    if (!tcp.write(data)) ws.pause();
  });
  tcp.on('drain', () => ws.resume());

  // backend -> client
  const sent = () => {
    if (tcpPaused && ws.bufferedAmount < HIGH) {
      tcpPaused = false;
      tcp.resume();
    }
  };
  tcp.on('data', (chunk) => {
    ws.send(chunk, { binary: true }, sent);
    if (ws.bufferedAmount >= HIGH) {
      tcpPaused = true;
      tcp.pause();
    }
  });

  // Either side ending ends both; errors end up as 'close' too.
  ws.on('close', () => tcp.destroy());
  ws.on('error', () => tcp.destroy());
  tcp.on('close', () => ws.terminate());
  tcp.on('error', () => ws.terminate());
});

wss.on('listening', () => console.error(`relay.js: listening on ${opts.listen}, backend ${opts.backend}`));
