/**
 * server/mux.ts's WsTransport with the socket under its WebSocket: the frames of a turn wait in the socket and go
 * to the kernel together once the turn's promise jobs have run (shared/turn-cork.ts). Real ws over loopback.
 */
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { WsTransport, dataFrameHead } from '../../server/mux.js';
import { READ_BUFFER_BYTES, giveReadBuffer, lendRead, releaseRead, takeReadBuffer } from '../../server/read-buffer.js';
import { HEADER_BYTES, MAX_DATA_PAYLOAD } from '../../shared/constants.js';
import { encodeData, encodeWindow } from '../../shared/encode.js';
import { waitFor } from '../helpers/backends.js';
import { bufferless } from '../helpers/frames.js';
import { noiseBytes } from '../helpers/mux-server.js';

async function pair(): Promise<{
  server: WebSocket;
  socket: net.Socket;
  client: WebSocket;
  clientSocket: net.Socket;
  received: string[];
  atServer: Buffer[];
  close(): void;
}> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  const accepted = once(wss, 'connection') as Promise<[WebSocket, IncomingMessage]>;
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}`, { perMessageDeflate: false });
  let clientSocket!: net.Socket;
  client.once('upgrade', (res: IncomingMessage) => (clientSocket = res.socket as net.Socket));
  const received: string[] = [];
  client.on('message', (m: Buffer) => received.push(m.toString()));
  const [server, req] = await accepted;
  const atServer: Buffer[] = [];
  server.on('message', (m: Buffer) => atServer.push(m));
  await once(client, 'open');
  return { server, socket: req.socket as net.Socket, client, clientSocket, received, atServer, close: () => (client.terminate(), wss.close()) };
}

type Pair = Awaited<ReturnType<typeof pair>>;

/** Run `test` on a fresh pair, closed afterwards whatever happens. */
async function withPair(test: (p: Pair) => Promise<void>): Promise<void> {
  const p = await pair();
  try {
    await test(p);
  } finally {
    p.close();
  }
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);
const MAX_BUFFERED = 1024 * 1024;

describe('WsTransport', () => {
  it("writes a turn's frames together when it has the socket", () =>
    withPair(async ({ server, socket, received }) => {
      const transport = new WsTransport(server, MAX_BUFFERED, undefined, socket);
      transport.send(text('one'));
      await Promise.resolve();
      transport.send(text('two'));
      expect(socket.writableCorked).toBe(1);
      expect(socket.writableLength).toBeGreaterThan(0);
      await new Promise((r) => setImmediate(r));
      expect([socket.writableCorked, socket.writableLength]).toEqual([0, 0]);
      await waitFor(() => received.length === 2, 5000, 'both frames at the client');
      expect(received).toEqual(['one', 'two']);
      await waitFor(() => transport.bufferedAmount === 0, 5000, 'send callbacks');
    }));

  it('holds a deferrable frame (a WINDOW) past its turn, until the I/O end or the next other frame', () =>
    withPair(async ({ server, socket, received }) => {
      const transport = new WsTransport(server, MAX_BUFFERED, undefined, socket);
      transport.send(text('window'), true);
      await new Promise((r) => process.nextTick(r));
      await Promise.resolve();
      expect(socket.writableCorked).toBe(1);
      await new Promise((r) => setImmediate(r));
      expect([socket.writableCorked, socket.writableLength]).toEqual([0, 0]);

      transport.send(text('window 2'), true);
      await new Promise((r) => process.nextTick(r));
      transport.send(text('data'));
      await new Promise((r) => process.nextTick(r));
      expect([socket.writableCorked, socket.writableLength]).toEqual([0, 0]);
      await waitFor(() => received.length === 3, 5000, 'the frames at the client');
      expect(received).toEqual(['window', 'window 2', 'data']);
      await waitFor(() => transport.bufferedAmount === 0, 5000, 'send callbacks');
    }));

  it('writes each frame at once without it', () =>
    withPair(async ({ server, socket, received }) => {
      const transport = new WsTransport(server, MAX_BUFFERED);
      transport.send(text('one'));
      expect(socket.writableCorked).toBe(0);
      await waitFor(() => received.length === 1, 5000, 'the frame at the client');
    }));

  it("sends DATA masked straight to a client's socket (the agent's dial), counted until written", () =>
    withPair(async ({ server, client, clientSocket, atServer }) => {
      expect(new WsTransport(server, MAX_BUFFERED).sendData).toBeUndefined(); // the gateway's side frames nothing itself
      const transport = new WsTransport(client, MAX_BUFFERED, undefined, clientSocket, true);
      const expected: Uint8Array[] = [];
      for (const [i, size] of [1, 200, 65_536, 40_000].entries()) {
        const payload = noiseBytes(size, i);
        transport.sendData!(2 * i + 2, payload);
        expected.push(encodeData(2 * i + 2, payload));
        if (i === 1) {
          transport.send(text('between')); // ws's own frame, in order with ours
          expected.push(text('between'));
        }
      }
      expect(transport.bufferedAmount).toBeGreaterThan(105_000); // held in the corked socket, counted
      await waitFor(() => atServer.length === expected.length, 5000, 'every frame at the server');
      expect(atServer.map((m, i) => m.equals(expected[i]!))).toEqual(expected.map(() => true));
      await waitFor(() => transport.bufferedAmount === 0, 5000, 'write callbacks');

      client.close();
      transport.sendData!(99, noiseBytes(10, 1)); // closing: goes to ws.send, which drops it
      expect(clientSocket.writableLength).toBe(0); // nothing written after the close frame
      await waitFor(() => transport.bufferedAmount === 0, 5000, 'the dropped frame uncounted');
      expect(atServer.length).toBe(expected.length);
    }));

  it("never asks a control frame for its ArrayBuffer (V8 would move it off the heap), and recycles DATA frames", () =>
    withPair(async ({ client, clientSocket, atServer }) => {
      const transport = new WsTransport(client, MAX_BUFFERED, undefined, clientSocket, true);
      const window = bufferless(encodeWindow(1, 1000, 262_144));
      transport.send(window, true); // written masked beside ws, as the agent writes its WINDOWs
      const frame = transport.frameBuffer(HEADER_BYTES + 20_000)!;
      const data = encodeData(3, noiseBytes(20_000, 3), frame);
      transport.send(data);
      await waitFor(() => atServer.length === 2, 5000, 'both frames at the server');
      expect(atServer[0]!.equals(encodeWindow(1, 1000, 262_144))).toBe(true);
      expect(atServer[1]!.equals(data)).toBe(true);
      await waitFor(() => transport.bufferedAmount === 0, 5000, 'send callbacks');
      // The DATA frame's memory went back to the pool once ws had written it.
      expect(transport.frameBuffer(HEADER_BYTES + 20_000)!.buffer).toBe(frame.buffer);
    }));

  it("the gateway's side writes a lent read's DATA as views of it, and the read goes back to the pool only once the socket wrote them", () =>
    withPair(async ({ server, socket, client }) => {
      const atClient: Buffer[] = [];
      client.on('message', (m: Buffer) => atClient.push(m));
      const transport = new WsTransport(server, MAX_BUFFERED, undefined, socket);
      const read = takeReadBuffer();
      read.set(noiseBytes(READ_BUFFER_BYTES, 7));
      lendRead(read); // as the bridge does with a bulk read
      const expected: Uint8Array[] = [];
      // The WebSocket header's three length forms: 2, 4 and 10 bytes (a message of 7, 1,006 and 65,542 bytes).
      const pieces = [read.subarray(0, 1), read.subarray(1, 1001), read.subarray(1001, 1001 + MAX_DATA_PAYLOAD)];
      for (const [i, piece] of pieces.entries()) {
        transport.sendData!(2 * i + 2, piece);
        expected.push(encodeData(2 * i + 2, piece));
        if (i === 0) {
          transport.send(text('between')); // ws's own frame, in order with ours
          expected.push(text('between'));
        }
      }
      const notLent = noiseBytes(300, 3);
      transport.sendData!(9, notLent); // not a lent read: copied into a frame for ws
      expected.push(encodeData(9, notLent));
      releaseRead(read); // the bridge lets go: the frames, still in the corked socket, hold the read
      const other = takeReadBuffer();
      expect(other.buffer).not.toBe(read.buffer);
      giveReadBuffer(other);
      expect(socket.writableLength).toBeGreaterThan(MAX_DATA_PAYLOAD);

      await waitFor(() => atClient.length === expected.length, 5000, 'every frame at the client');
      expect(atClient.map((m, i) => m.equals(expected[i]!))).toEqual(expected.map(() => true));
      await waitFor(() => transport.bufferedAmount === 0, 5000, 'write callbacks');
      // Written: the read is the next one the pool hands out.
      expect(takeReadBuffer().buffer).toBe(read.buffer);

      server.close();
      const late = takeReadBuffer();
      lendRead(late);
      transport.sendData!(11, late.subarray(0, 1000)); // closing: copied for ws.send, which drops it; not held
      releaseRead(late);
      expect(takeReadBuffer().buffer).toBe(late.buffer);
      await waitFor(() => transport.bufferedAmount === 0, 5000, 'the dropped frame uncounted');
      expect(atClient.length).toBe(expected.length);
    }));

  it('frames a DATA head as ws frames the same message, for each length form', () => {
    // ws's own framing (its Sender, which @types/ws does not declare): a server's unmasked, final, binary message.
    const { Sender } = createRequire(import.meta.url)('ws') as { Sender: { frame(data: Buffer, opts: object): Buffer[] } };
    for (const n of [1, 119, 120, 65_529, 65_530, MAX_DATA_PAYLOAD]) {
      const payload = noiseBytes(n, n);
      const message = Buffer.from(encodeData(0x01020304, payload));
      const byWs = Buffer.concat(Sender.frame(message, { fin: true, rsv1: false, opcode: 2, mask: false, readOnly: true }));
      expect(Buffer.concat([dataFrameHead(0x01020304, n), payload]).equals(byWs)).toBe(true);
    }
  });
});
