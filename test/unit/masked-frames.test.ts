/**
 * client/masked-frames.ts: DATA frames masked in the pass that copies their payload, and small control frames
 * framed and masked in one write. The bytes must be exactly those ws.send() puts on the wire with the same masking
 * key, and a real ws server must read them, in order, between ws's own frames.
 */
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type net from 'node:net';
import { Writable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import * as wsModule from 'ws';
import { WebSocketServer } from 'ws';
import { MAX_SMALL_MESSAGE_BYTES, encodeMaskedData, encodeMaskedMessage, maskedDataFrameBytes, writeMaskedData } from '../../client/masked-frames.js';
import { NodeWebSocket } from '../../client/node.js';
import { MAX_DATA_PAYLOAD } from '../../shared/constants.js';
import { decodeFrame } from '../../shared/decode.js';
import { encodeData, encodeWindow } from '../../shared/encode.js';
import { waitFor } from '../helpers/backends.js';
import { noiseBytes } from '../helpers/mux-server.js';
import { wssPair } from '../helpers/tls.js';

/** ws's frame builder: exported by ws (`WebSocket.Sender`), though its typings leave it out. */
const { Sender } = wsModule as unknown as {
  Sender: { frame(data: Buffer, options: Record<string, unknown>): Buffer[] };
};

/** What ws sends for encodeData(streamId, payload) when its masking key is `key`. */
function wsFrame(streamId: number, payload: Uint8Array, key: Uint8Array): Buffer {
  return wsMessage(encodeData(streamId, payload), key);
}

/** What ws sends for a binary message when its masking key is `key`. */
function wsMessage(message: Uint8Array, key: Uint8Array): Buffer {
  const maskBuffer = Buffer.from(key);
  const parts = Sender.frame(Buffer.from(message), {
    fin: true,
    opcode: 2,
    mask: true,
    maskBuffer,
    generateMask: () => {}, // keep maskBuffer as it is
    readOnly: true,
    rsv1: false,
  });
  return Buffer.concat(parts);
}

/** Payload sizes around each WebSocket length form: 7-bit (<126), 16-bit (<65,536) and 64-bit, with our 6 bytes. */
const SIZES = [1, 2, 3, 4, 5, 119, 120, 121, 1000, 65_529, 65_530, 65_531, MAX_DATA_PAYLOAD];
const KEYS = [
  [0x12, 0x34, 0x56, 0x78],
  [0xff, 0xff, 0xff, 0xff],
  [0, 0, 0, 0],
  [0xa5, 0x00, 0x5a, 0x01],
].map((k) => Uint8Array.from(k));

describe('encodeMaskedData', () => {
  it('makes the same bytes as ws.send(encodeData(...)) for every length form, stream id and key', () => {
    for (const size of SIZES) {
      const payload = noiseBytes(size, size);
      for (const streamId of [1, 2, 0x01020304, 0xffff_ffff]) {
        for (const key of KEYS) {
          const into = new Uint8Array(maskedDataFrameBytes(size) + 5);
          const n = encodeMaskedData(into, streamId, payload, key);
          expect(n).toBe(maskedDataFrameBytes(size));
          expect(Buffer.from(into.subarray(0, n)).equals(wsFrame(streamId, payload, key)), `size ${size} id ${streamId} key ${key.join()}`).toBe(true);
        }
      }
    }
  });

  it('makes the same bytes with the JavaScript mask, when bufferutil is not to be used (WS_NO_BUFFER_UTIL)', async () => {
    vi.resetModules();
    vi.stubEnv('WS_NO_BUFFER_UTIL', '1');
    try {
      const fresh = await import('../../client/masked-frames.js');
      expect(fresh.encodeMaskedData).not.toBe(encodeMaskedData); // a new instance of the module, loaded with the variable set
      for (const size of [1, 125, 65_530, MAX_DATA_PAYLOAD]) {
        const payload = new Uint8Array(noiseBytes(size, size + 1)); // a plain Uint8Array, not a Buffer
        const key = KEYS[3]!;
        const into = new Uint8Array(fresh.maskedDataFrameBytes(size));
        fresh.encodeMaskedData(into, 3, payload, key);
        expect(Buffer.from(into).equals(wsFrame(3, payload, key)), `size ${size}`).toBe(true);
      }
    } finally {
      vi.unstubAllEnvs();
      vi.resetModules();
    }
  });

  it('reads a payload that is a view into a larger buffer from its own offset only', () => {
    const backing = noiseBytes(70_000, 3);
    const payload = backing.subarray(1001, 1001 + 40_000);
    const key = KEYS[0]!;
    const into = new Uint8Array(maskedDataFrameBytes(payload.length));
    encodeMaskedData(into, 7, payload, key);
    expect(Buffer.from(into).equals(wsFrame(7, payload, key))).toBe(true);
  });

  it('refuses payloads DATA cannot carry and buffers too small for the frame', () => {
    const key = KEYS[0]!;
    expect(() => encodeMaskedData(new Uint8Array(100), 1, new Uint8Array(0), key)).toThrow(RangeError);
    expect(() => encodeMaskedData(new Uint8Array(70_000), 1, new Uint8Array(MAX_DATA_PAYLOAD + 1), key)).toThrow(RangeError);
    expect(() => encodeMaskedData(new Uint8Array(maskedDataFrameBytes(10) - 1), 1, new Uint8Array(10), key)).toThrow(RangeError);
  });
});

describe('encodeMaskedMessage', () => {
  it('makes the same bytes as ws.send(message) for both length forms it takes, and every key', () => {
    for (const size of [0, 1, 5, 14, 125, 126, 127, 1000, MAX_SMALL_MESSAGE_BYTES]) {
      const message = noiseBytes(size, size + 3);
      for (const key of KEYS) {
        const into = new Uint8Array(MAX_SMALL_MESSAGE_BYTES + 20);
        const n = encodeMaskedMessage(into, message, key);
        expect(Buffer.from(into.subarray(0, n)).equals(wsMessage(message, key)), `size ${size} key ${key.join()}`).toBe(true);
      }
    }
  });

  it('refuses messages over MAX_SMALL_MESSAGE_BYTES and buffers too small for the frame', () => {
    const key = KEYS[0]!;
    expect(() => encodeMaskedMessage(new Uint8Array(2000), new Uint8Array(MAX_SMALL_MESSAGE_BYTES + 1), key)).toThrow(RangeError);
    expect(() => encodeMaskedMessage(new Uint8Array(15), new Uint8Array(10), key)).toThrow(RangeError);
  });
});

describe('writeMaskedData', () => {
  it('writes one frame per call with a fresh masking key, and reports each written once', async () => {
    const written: Buffer[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        written.push(Buffer.from(chunk)); // a copy: pooled frames are reused once written
        cb();
      },
    });
    let done = 0;
    const sizes = [10, 70_000 - 4_465, 20_000, 65_536, 3];
    for (const [i, size] of sizes.entries()) writeMaskedData(sink, i + 1, noiseBytes(size, i), () => done++);
    await waitFor(() => done === sizes.length, 5000, 'every frame written');
    expect(written.map((w) => w.length)).toEqual(sizes.map(maskedDataFrameBytes));
    const keys = written.map((w, i) => {
      const at = w[1]! === (0x80 | 127) ? 10 : w[1]! === (0x80 | 126) ? 4 : 2;
      const key = w.subarray(at, at + 4);
      // The frame is what ws would make with that key: the key is the only freedom there is.
      expect(w.equals(wsFrame(i + 1, noiseBytes(sizes[i]!, i), key))).toBe(true);
      return key.toString('hex');
    });
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe('NodeWebSocket.sendData', () => {
  it('sends DATA a ws server reads in order between ws frames, and refuses once the WebSocket is closing', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    const received: Buffer[] = [];
    let extensions: string | undefined;
    wss.on('connection', (peer, req) => {
      extensions = req.headers['sec-websocket-extensions'];
      peer.on('message', (m: Buffer) => received.push(m));
    });
    const ws = new NodeWebSocket(`ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}`);
    let socket!: net.Socket;
    ws.once('upgrade', (res: IncomingMessage) => (socket = res.socket as net.Socket));
    try {
      expect(ws.sendData(1, new Uint8Array(1), () => {})).toBe(false); // not open yet
      await once(ws, 'open');
      expect(extensions).toBeUndefined(); // never offers permessage-deflate
      const expected: Buffer[] = [];
      let done = 0;
      for (let i = 0; i < 40; i++) {
        const payload = noiseBytes([1, 125, 4000, 65_536, 30_000][i % 5]!, i);
        if (i % 7 === 3) {
          ws.corkTurn(); // some of them batched with ws's own frames in one write
          ws.send(Buffer.from(`ws ${i}`));
          expected.push(Buffer.from(`ws ${i}`));
        }
        expect(ws.sendData(2 * i + 1, payload, () => done++)).toBe(true);
        expected.push(Buffer.from(encodeData(2 * i + 1, payload)));
        if (i % 10 === 9) ws.ping();
      }
      await waitFor(() => received.length === expected.length && done === 40, 10_000, 'every message at the server');
      expect(received.map((m, i) => m.equals(expected[i]!))).toEqual(expected.map(() => true));
      expect(decodeFrame(new Uint8Array(received[0]!)).type).toBe(4);
      expect(socket.writableLength).toBe(0);

      ws.close();
      expect(ws.sendData(99, new Uint8Array(5), () => {})).toBe(false);
    } finally {
      ws.terminate();
      wss.close();
    }
  });

  it('sendSmall: control frames a ws server reads in order between DATA and ws frames; larger ones refused', async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    const received: Buffer[] = [];
    wss.on('connection', (peer) => peer.on('message', (m: Buffer) => received.push(m)));
    const ws = new NodeWebSocket(`ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}`);
    let socket!: net.Socket;
    ws.once('upgrade', (res: IncomingMessage) => (socket = res.socket as net.Socket));
    try {
      expect(ws.sendSmall(new Uint8Array(14), () => {})).toBe(false); // not open yet
      await once(ws, 'open');
      expect(ws.sendSmall(new Uint8Array(MAX_SMALL_MESSAGE_BYTES + 1), () => {})).toBe(false);
      const expected: Buffer[] = [];
      let done = 0;
      for (let i = 0; i < 30; i++) {
        const window = encodeWindow(2 * i + 1, i * 1000, 262_144 + i);
        if (i % 3 === 0) ws.corkTurn(true); // several in one write, as the engine defers WINDOWs
        expect(ws.sendSmall(window, () => done++)).toBe(true);
        expected.push(Buffer.from(window));
        if (i % 4 === 1) {
          const payload = noiseBytes(2000, i);
          expect(ws.sendData(2 * i + 1, payload, () => {})).toBe(true);
          expected.push(Buffer.from(encodeData(2 * i + 1, payload)));
        }
        if (i % 5 === 2) {
          ws.send(Buffer.from(`ws ${i}`));
          expected.push(Buffer.from(`ws ${i}`));
        }
      }
      await waitFor(() => received.length === expected.length && done === 30, 10_000, 'every message at the server');
      expect(received.map((m, i) => m.equals(expected[i]!))).toEqual(expected.map(() => true));
      expect(socket.writableLength).toBe(0);
      ws.close();
      expect(ws.sendSmall(new Uint8Array(14), () => {})).toBe(false);
    } finally {
      ws.terminate();
      wss.close();
    }
  });

  it('writes through TLS (wss:) as well: the socket under the WebSocket is then a TLSSocket', async () => {
    const received: Buffer[] = [];
    // The SDK's NodeWebSocket takes no TLS options; ws with the same settings and writeMaskedData is the same path.
    const pair = await wssPair((peer) => peer.on('message', (m: Buffer) => received.push(m)));
    try {
      await once(pair.ws, 'open');
      const socket = pair.socket();
      expect(socket.constructor.name).toBe('TLSSocket');
      const expected: Buffer[] = [];
      let done = 0;
      for (const [i, size] of [3, 65_536, 20_000].entries()) {
        const payload = noiseBytes(size, i + 7);
        writeMaskedData(socket, 2 * i + 1, payload, () => done++);
        expected.push(Buffer.from(encodeData(2 * i + 1, payload)));
      }
      await waitFor(() => received.length === expected.length && done === expected.length, 10_000, 'every message at the server');
      expect(received.map((m, i) => m.equals(expected[i]!))).toEqual([true, true, true]);
    } finally {
      pair.close();
    }
  });
});
