// The lean client: a WebSocket client for the download measurement that costs its process as little as a
// WebSocket can. It reads its socket into one reused buffer (`onread`) and hands each frame's payload to the
// caller as a view into that buffer, frame by frame, without reassembling messages. `ws` allocates a buffer per
// socket read and copies each message together; at a gigabyte a second that took the client about 0.9 s of CPU
// per GiB, a whole core, so every relay measured the client's ceiling instead of its own (docs/BENCHMARKS.md).
//
// It speaks RFC 6455 as a client: the opening handshake (checking Sec-WebSocket-Accept), masked frames out,
// unmasked frames in. Binary and continuation frames carry data; a ping is answered with a pong; a close frame,
// a text frame, a masked or reserved-bit frame, or a control frame over 125 bytes ends the connection with an
// error. No extensions are offered, so none can be in use.
//
// The views passed to onData are valid only during the call: the next read overwrites them. Same interface as
// conns.mjs's connections: onData, write, pauseReading, unsent, close.
import { Buffer } from 'node:buffer';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Bytes per socket read. */
export const READ_BUFFER = 256 * 1024;
/** A response header longer than this is refused. */
const MAX_RESPONSE_HEADER = 16 * 1024;

/** Bytes held for a connection whose caller has not called onData yet. */
const MAX_EARLY = 16 * 1024 * 1024;

/**
 * Hands views of a reused buffer to the caller's onData; bytes that arrive before it is set (the same read as the
 * handshake's response, say) are copied and handed over when it is, at most MAX_EARLY of them.
 */
export class Delivery {
  #fn = undefined;
  #early = [];
  #earlyBytes = 0;

  /** @param {Uint8Array} view */
  push(view) {
    if (this.#fn) return this.#fn(view);
    this.#earlyBytes += view.length;
    if (this.#earlyBytes > MAX_EARLY) throw new Error(`more than ${MAX_EARLY} bytes arrived before anyone read them`);
    this.#early.push(Buffer.from(view));
  }

  set(fn) {
    this.#fn = fn;
    for (const b of this.#early.splice(0)) fn(b);
  }
}

/** One client frame (FIN set, masked with a fresh random key), for `payload` of `opcode`. */
export function maskedFrame(opcode, payload) {
  const len = payload.length;
  const ext = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const frame = Buffer.allocUnsafe(2 + ext + 4 + len);
  frame[0] = 0x80 | opcode;
  if (ext === 0) frame[1] = 0x80 | len;
  else if (ext === 2) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(len, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeBigUInt64BE(BigInt(len), 2);
  }
  const keyAt = 2 + ext;
  randomBytes(4).copy(frame, keyAt);
  for (let i = 0; i < len; i++) frame[keyAt + 4 + i] = payload[i] ^ frame[keyAt + (i & 3)];
  return frame;
}

/**
 * Frame parser: feed it bytes as they arrive (any cut), it calls `data(view)` for payload bytes of binary and
 * continuation frames as they arrive, and `control(opcode, payload)` for each complete ping, pong or close.
 * Throws on anything a client must not accept.
 */
export class FrameReader {
  #header = Buffer.alloc(14);
  #have = 0; // header bytes collected
  #need = 2; // header bytes this frame needs (known after the first two)
  #left = 0; // payload bytes still to come in the current frame
  #opcode = 0;
  #fin = false;
  #control = undefined; // a control frame's payload, collected
  #inMessage = false; // a binary message is open (its last frame not seen yet)

  constructor(data, control) {
    this.data = data;
    this.control = control;
  }

  /** @param {Uint8Array} chunk */
  push(chunk) {
    let i = 0;
    while (i < chunk.length) {
      if (this.#left === 0 && this.#control === undefined) {
        // collecting a header
        while (this.#have < this.#need && i < chunk.length) this.#header[this.#have++] = chunk[i++];
        if (this.#have === 2) this.#need = this.#headerLength();
        if (this.#have < this.#need) continue;
        this.#startFrame();
        if (this.#left === 0) this.#endFrame();
        continue;
      }
      const n = Math.min(this.#left, chunk.length - i);
      const view = chunk.subarray(i, i + n);
      if (this.#control) {
        this.#control.push(Buffer.from(view));
      } else this.data(view);
      i += n;
      this.#left -= n;
      if (this.#left === 0) this.#endFrame();
    }
  }

  #headerLength() {
    const b1 = this.#header[1];
    if (b1 & 0x80) throw new Error('the server masked a frame');
    const len7 = b1 & 0x7f;
    return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0);
  }

  #startFrame() {
    const b0 = this.#header[0];
    if (b0 & 0x70) throw new Error('a reserved bit is set, and no extension was negotiated');
    const len7 = this.#header[1] & 0x7f;
    const len = len7 === 126 ? this.#header.readUInt16BE(2) : len7 === 127 ? Number(this.#header.readBigUInt64BE(2)) : len7;
    if (len > Number.MAX_SAFE_INTEGER) throw new Error('a frame longer than 2^53 bytes');
    this.#opcode = b0 & 0x0f;
    this.#fin = (b0 & 0x80) !== 0;
    this.#left = len;
    this.#have = 0;
    this.#need = 2;
    if (this.#opcode >= 0x8) {
      if (len > 125 || !this.#fin) throw new Error(`control frame of ${len} bytes${this.#fin ? '' : ', fragmented'}`);
      this.#control = [];
    } else if (this.#opcode === 0x2) {
      if (this.#inMessage) throw new Error('a new message began before the last one ended');
      this.#inMessage = !this.#fin;
    } else if (this.#opcode === 0x0) {
      if (!this.#inMessage) throw new Error('a continuation frame outside a message');
      this.#inMessage = !this.#fin;
    } else throw new Error(`unexpected opcode ${this.#opcode}`);
  }

  #endFrame() {
    if (this.#control) {
      const payload = Buffer.concat(this.#control);
      this.#control = undefined;
      this.control(this.#opcode, payload);
    }
  }
}

/** Opens a WebSocket to `url` (ws://127.0.0.1:port/path) and returns a connection (see the header). */
export async function leanWsConn(url, protocols = []) {
  const { hostname, port, pathname, search } = new URL(url);
  const key = randomBytes(16).toString('base64');
  const delivery = new Delivery();
  let failure;
  let handshake = Buffer.alloc(0);
  let opened;
  const open = new Promise((resolve, reject) => (opened = { resolve, reject }));
  open.catch(() => {}); // awaited below, once connected; a failure before then must not go unhandled
  const closeListeners = [];
  const fail = (err) => {
    if (failure) return;
    failure = err;
    opened.reject(err);
    socket.destroy();
    for (const fn of closeListeners.splice(0)) fn(err);
  };
  const reader = new FrameReader(
    // Nothing after a close frame (or any failure) is data, even in the same read.
    (view) => failure || delivery.push(view),
    (opcode, payload) => {
      if (opcode === 0x9) socket.write(maskedFrame(0xa, payload));
      else if (opcode === 0x8) fail(new Error(`the server closed the WebSocket (${payload.length >= 2 ? payload.readUInt16BE(0) : 'no code'})`));
    },
  );
  const frames = (chunk) => {
    try {
      reader.push(chunk);
    } catch (err) {
      fail(err);
    }
  };
  const socket = net.connect({
    host: hostname,
    port: Number(port || 80),
    onread: {
      buffer: Buffer.allocUnsafe(READ_BUFFER),
      callback(n, buf) {
        if (failure) return false;
        const chunk = buf.subarray(0, n);
        if (handshake) return void readHandshake(chunk);
        frames(chunk);
      },
    },
  });
  socket.setNoDelay(true);
  socket.on('error', fail);
  socket.on('close', () => fail(new Error('the connection closed')));
  function readHandshake(chunk) {
    handshake = Buffer.concat([handshake, chunk]);
    const end = handshake.indexOf('\r\n\r\n');
    if (end < 0) {
      if (handshake.length > MAX_RESPONSE_HEADER) fail(new Error('the handshake response has no end'));
      return;
    }
    const [status, ...lines] = handshake.subarray(0, end).toString('latin1').split('\r\n');
    const rest = handshake.subarray(end + 4);
    handshake = undefined;
    const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
    const accept = createHash('sha1').update(key + GUID).digest('base64');
    if (!/^HTTP\/1\.1 101(\s|$)/.test(status)) return fail(new Error(`handshake refused: ${status}`));
    if (headers['sec-websocket-accept'] !== accept) return fail(new Error('wrong Sec-WebSocket-Accept'));
    if (headers['sec-websocket-extensions']) return fail(new Error('the server chose an extension nobody offered'));
    const chosen = headers['sec-websocket-protocol'];
    if (protocols.length ? !protocols.includes(chosen) : chosen !== undefined) return fail(new Error(`the server chose subprotocol ${chosen}`));
    opened.resolve();
    if (rest.length) frames(rest);
  }
  await new Promise((r, j) => socket.once('connect', r).once('error', j));
  socket.write(
    `GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
      (protocols.length ? `Sec-WebSocket-Protocol: ${protocols.join(', ')}\r\n` : '') +
      '\r\n',
  );
  await open;
  return {
    onData(fn) {
      delivery.set(fn);
    },
    async write(buf) {
      if (failure) throw failure;
      if (!socket.write(maskedFrame(0x2, buf))) await new Promise((r) => socket.once('drain', r).once('close', r));
      if (failure) throw failure;
    },
    pauseReading() {
      socket.pause();
    },
    unsent: () => socket.writableLength,
    close() {
      fail(new Error('closed'));
    },
    /** Why the connection ended, if it did. */
    error: () => failure,
    /** `fn(err)` once the connection ends, for whatever reason (also after close()). */
    onClose(fn) {
      if (failure) fn(failure);
      else closeListeners.push(fn);
    },
  };
}
