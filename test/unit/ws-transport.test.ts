/**
 * server/mux.ts's WsTransport with the socket under its WebSocket: the frames of a turn wait in the socket and go
 * to the kernel together once the turn's promise jobs have run (shared/turn-cork.ts). Real ws over loopback.
 */
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type net from 'node:net';
import { describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { WsTransport } from '../../server/mux.js';
import { HEADER_BYTES } from '../../shared/constants.js';
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
});
