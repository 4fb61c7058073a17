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
import { encodeData } from '../../shared/encode.js';
import { waitFor } from '../helpers/backends.js';
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

describe('WsTransport', () => {
  it("writes a turn's frames together when it has the socket", async () => {
    const { server, socket, received, close } = await pair();
    try {
      const transport = new WsTransport(server, 1024 * 1024, undefined, socket);
      transport.send(new TextEncoder().encode('one'));
      await Promise.resolve();
      transport.send(new TextEncoder().encode('two'));
      expect(socket.writableCorked).toBe(1);
      expect(socket.writableLength).toBeGreaterThan(0);
      await new Promise((r) => setImmediate(r));
      expect([socket.writableCorked, socket.writableLength]).toEqual([0, 0]);
      await waitFor(() => received.length === 2, 5000, 'both frames at the client');
      expect(received).toEqual(['one', 'two']);
      await waitFor(() => transport.bufferedAmount === 0, 5000, 'send callbacks');
    } finally {
      close();
    }
  });

  it('holds a deferrable frame (a WINDOW) past its turn, until the I/O end or the next other frame', async () => {
    const { server, socket, received, close } = await pair();
    try {
      const transport = new WsTransport(server, 1024 * 1024, undefined, socket);
      transport.send(new TextEncoder().encode('window'), true);
      await new Promise((r) => process.nextTick(r));
      await Promise.resolve();
      expect(socket.writableCorked).toBe(1);
      await new Promise((r) => setImmediate(r));
      expect([socket.writableCorked, socket.writableLength]).toEqual([0, 0]);

      transport.send(new TextEncoder().encode('window 2'), true);
      await new Promise((r) => process.nextTick(r));
      transport.send(new TextEncoder().encode('data'));
      await new Promise((r) => process.nextTick(r));
      expect([socket.writableCorked, socket.writableLength]).toEqual([0, 0]);
      await waitFor(() => received.length === 3, 5000, 'the frames at the client');
      expect(received).toEqual(['window', 'window 2', 'data']);
      await waitFor(() => transport.bufferedAmount === 0, 5000, 'send callbacks');
    } finally {
      close();
    }
  });

  it('writes each frame at once without it', async () => {
    const { server, socket, received, close } = await pair();
    try {
      const transport = new WsTransport(server, 1024 * 1024);
      transport.send(new TextEncoder().encode('one'));
      expect(socket.writableCorked).toBe(0);
      await waitFor(() => received.length === 1, 5000, 'the frame at the client');
    } finally {
      close();
    }
  });

  it("sends DATA masked straight to a client's socket (the agent's dial), counted until written", async () => {
    const { server, client, clientSocket, atServer, close } = await pair();
    try {
      expect(new WsTransport(server, 1024 * 1024).sendData).toBeUndefined(); // the gateway's side frames nothing itself
      const transport = new WsTransport(client, 1024 * 1024, undefined, clientSocket, true);
      const expected: Uint8Array[] = [];
      for (const [i, size] of [1, 200, 65_536, 40_000].entries()) {
        const payload = noiseBytes(size, i);
        transport.sendData!(2 * i + 2, payload);
        expected.push(encodeData(2 * i + 2, payload));
        if (i === 1) {
          transport.send(new TextEncoder().encode('between')); // ws's own frame, in order with ours
          expected.push(new TextEncoder().encode('between'));
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
    } finally {
      close();
    }
  });
});
