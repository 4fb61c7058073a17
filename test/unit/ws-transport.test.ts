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
import { waitFor } from '../helpers/backends.js';

async function pair(): Promise<{ server: WebSocket; socket: net.Socket; client: WebSocket; received: string[]; close(): void }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  const accepted = once(wss, 'connection') as Promise<[WebSocket, IncomingMessage]>;
  const client = new WebSocket(`ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}`);
  const received: string[] = [];
  client.on('message', (m: Buffer) => received.push(m.toString()));
  const [server, req] = await accepted;
  await once(client, 'open');
  return { server, socket: req.socket as net.Socket, client, received, close: () => (client.terminate(), wss.close()) };
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
});
