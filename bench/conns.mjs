// One connection interface over plain TCP, a WebSocket, and a sockgate mux stream (the SDK, or a minimal
// client on the shared codec), so every measurement runs unchanged against every relay.
//   conn.onData(fn)     bytes from the backend
//   conn.write(buf)     resolves when the caller may write more (the transport's own backpressure)
//   conn.pauseReading() stop reading (the backpressure probes)
//   conn.unsent()       bytes written but still held in this process (not yet handed to the kernel)
//   conn.close()
import { Buffer } from 'node:buffer';
import net from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import WebSocket from 'ws';
import { Delivery, READ_BUFFER, leanWsConn } from './lean-ws.mjs';

export function lengthHeader(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

/** ws has no 'drain': past HIGH bytes buffered, wait for a send callback that finds it below LOW. */
const WS_HIGH = 4 * 1024 * 1024;
const WS_LOW = 1024 * 1024;

/**
 * `lean`: read into one reused buffer (`onread`) instead of a fresh one per read, as lean-ws.mjs does; the bytes
 * given to onData are then valid only during the call.
 */
export async function tcpConn(port, { lean = false } = {}) {
  const delivery = new Delivery();
  const read = (n, buf) => {
    try {
      delivery.push(buf.subarray(0, n));
    } catch (err) {
      socket.destroy(err);
    }
  };
  const socket = net.connect({ port, host: '127.0.0.1', onread: lean ? { buffer: Buffer.allocUnsafe(READ_BUFFER), callback: read } : undefined });
  socket.setNoDelay(true);
  await new Promise((r, j) => socket.once('connect', r).once('error', j));
  socket.on('error', () => {});
  return {
    onData(fn) {
      if (lean) delivery.set(fn);
      else socket.on('data', fn);
    },
    async write(buf) {
      if (!socket.write(buf)) await new Promise((r) => socket.once('drain', r).once('close', r));
    },
    pauseReading() {
      socket.pause();
    },
    unsent: () => socket.writableLength,
    close() {
      socket.destroy();
    },
  };
}

export async function wsConn(url, protocols) {
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false });
  ws.binaryType = 'nodebuffer';
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  ws.on('error', () => {});
  let waiter;
  const sent = () => {
    if (waiter && ws.bufferedAmount <= WS_LOW) {
      const w = waiter;
      waiter = undefined;
      w();
    }
  };
  ws.once('close', () => waiter?.());
  return {
    onData(fn) {
      ws.on('message', fn);
    },
    async write(buf) {
      ws.send(buf, sent);
      if (ws.bufferedAmount > WS_HIGH) await new Promise((r) => (waiter = r));
    },
    pauseReading() {
      ws.pause();
    },
    unsent: () => ws.bufferedAmount,
    close() {
      ws.terminate();
    },
  };
}

const sdks = new Map();
/** The Node SDK of a sockgate build (dist/client/node.js under `dist`). */
export function loadSdk(dist) {
  if (!sdks.has(dist)) sdks.set(dist, import(pathToFileURL(join(dist, 'client/node.js')).href));
  return sdks.get(dist);
}

/** A stream through the SDK (client/): one session per connection unless a session is given. */
export async function muxConn(url, route, { dist, session: shared } = {}) {
  const session = shared ?? (await (await loadSdk(dist)).openSession(url));
  const socket = session.connect(route);
  const { readable, writable } = await socket.opened;
  const writer = writable.getWriter();
  const reader = readable.getReader();
  let onData = () => {};
  let paused = false;
  (async () => {
    try {
      for (;;) {
        if (paused) return;
        const { value, done } = await reader.read();
        if (done) return;
        onData(value);
      }
    } catch {
      /* closed */
    }
  })();
  return {
    onData(fn) {
      onData = fn;
    },
    async write(buf) {
      await writer.ready;
      writer.write(buf).catch(() => {});
    },
    pauseReading() {
      paused = true;
    },
    unsent: () => session.bufferedAmount,
    close() {
      if (shared) socket.reset();
      else session.close().catch(() => {});
    },
    session,
  };
}

const codecs = new Map();
function loadCodec(dist) {
  if (!codecs.has(dist)) {
    codecs.set(
      dist,
      Promise.all([import(pathToFileURL(join(dist, 'shared/encode.js')).href), import(pathToFileURL(join(dist, 'shared/decode.js')).href)]).then(
        ([enc, dec]) => ({ ...enc, ...dec }),
      ),
    );
  }
  return codecs.get(dist);
}

/**
 * A minimal mux client for many idle connections and the set-up rate: one session with one stream (id 1) on a
 * bare ws WebSocket and the shared codec, no SDK objects. It never sends WINDOW, so it only suits transfers
 * within the initial window (256 KiB).
 */
export async function muxLiteConn(url, route, { dist }) {
  const codec = await loadCodec(dist);
  const ws = new WebSocket(url, ['sockgate.v1'], { perMessageDeflate: false });
  ws.binaryType = 'nodebuffer';
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  ws.on('error', () => {});
  let onData = () => {};
  ws.on('message', (m) => {
    const frame = codec.decodeFrame(new Uint8Array(m.buffer, m.byteOffset, m.byteLength));
    if (frame.type === 0x04 && frame.streamId === 1) onData(frame.data);
    else if (frame.type === 0x08) ws.send(codec.encodePong(frame.opaque)); // PING: a keepalive may expect PONG
    else if (frame.type === 0x03 || frame.type === 0x07) ws.terminate(); // OPEN_FAIL, RESET
  });
  ws.send(codec.encodeOpen(1, route));
  return {
    onData(fn) {
      onData = fn;
    },
    async write(buf) {
      ws.send(codec.encodeData(1, buf));
    },
    pauseReading() {
      ws.pause();
    },
    unsent: () => ws.bufferedAmount,
    close() {
      ws.terminate();
    },
  };
}

/**
 * Open a connection to a route through a relay target (see relays.mjs):
 *   { kind: 'tcp', ports: { route: port } } | { kind: 'ws', urls: { route: url }, protocols }
 *   { kind: 'mux', url, dist }; `lite` picks muxLiteConn for mux; `lean` the reused-buffer readers of
 *   lean-ws.mjs (WebSockets) and tcpConn (TCP), whose bytes are valid only during the onData call.
 */
export function openConn(target, route, { lite = false, lean = false } = {}) {
  switch (target.kind) {
    case 'tcp':
      return tcpConn(target.ports[route], { lean });
    case 'ws':
      return (lean ? leanWsConn : wsConn)(target.urls[route], target.protocols);
    case 'mux':
      return lite ? muxLiteConn(target.url, route, target) : muxConn(target.url, route, target);
    default:
      throw new Error(`unknown target kind ${target.kind}`);
  }
}
