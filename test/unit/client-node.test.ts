/**
 * The Node entry (client/node.ts): ws as the default WebSocket, its corkTurn() (one write per turn), its frame
 * reader (DATA payloads as views of the socket's reads), and toDuplex() over a real WebSocket.
 */
import { once } from 'node:events';
import type { IncomingMessage } from 'node:http';
import type net from 'node:net';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocketServer } from 'ws';
import { NodeWebSocket, openSession, toDuplex, type SockgateSession } from '../../client/node.js';
import { sha256, waitFor } from '../helpers/backends.js';
import { dial } from '../../server/dial.js';
import { encodeData } from '../../shared/encode.js';
import { MAX_FRAME_BYTES } from '../../shared/constants.js';
import { noiseBytes, patternAt, startMuxServer, type MuxServer } from '../helpers/mux-server.js';

let server: MuxServer | undefined;
let session: SockgateSession | undefined;
afterEach(async () => {
  await session?.close();
  await server?.close();
  session = server = undefined;
});

async function setup(): Promise<{ server: MuxServer; session: SockgateSession }> {
  server = await startMuxServer();
  // Node 20 has no global WebSocket: this goes through the ws default of client/node.ts.
  session = await openSession(server.url);
  return { server, session };
}

describe('toDuplex', () => {
  it('pipes bytes through a Duplex, half-closing with end()', async () => {
    const { session } = await setup();
    const duplex = toDuplex(session.connect('echo'));
    const data = noiseBytes(1024 * 1024 + 3, 4);
    const [, received] = await Promise.all([pipeline(Readable.from([data.subarray(0, 1000), data.subarray(1000)]), duplex), buffer(duplex)]);
    expect(sha256(received)).toBe(sha256(data));
  });

  it('keeps writing after the backend EOF with allowHalfOpen', async () => {
    const { server, session } = await setup();
    const duplex = toDuplex(session.connect('source-5'), { allowHalfOpen: true });
    duplex.resume();
    await once(duplex, 'end');
    await new Promise<void>((resolve, reject) => duplex.write(Buffer.from('late'), (err) => (err ? reject(err) : resolve())));
    duplex.end();
    await once(duplex, 'close');
    // 'close' means our FIN went to the WebSocket; the server sees the stream close once it arrives.
    const stream = server.ctx.streams[0]!.stream;
    await waitFor(() => stream.isClosed, 5000, 'server stream closed');
    expect([stream.bytesIn, stream.error]).toEqual([4, undefined]);
  });

  it('destroys the Duplex with the sockgate error code', async () => {
    const { session } = await setup();
    const duplex = toDuplex(session.connect('refused'));
    duplex.resume();
    const [err] = (await once(duplex, 'error')) as [Error & { code?: string }];
    expect(err.code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
  });
});

describe('openSession (Node entry)', () => {
  it('uses ws even where the runtime has a global WebSocket (Node 22 and later)', async () => {
    server = await startMuxServer();
    const constructed: string[] = [];
    class GlobalWebSocket {
      constructor(url: string) {
        constructed.push(url);
        throw new Error('the global WebSocket was used');
      }
    }
    const g = globalThis as { WebSocket?: unknown };
    const had = Object.prototype.hasOwnProperty.call(g, 'WebSocket');
    const before = g.WebSocket;
    g.WebSocket = GlobalWebSocket;
    try {
      session = await openSession(server.url);
    } finally {
      if (had) g.WebSocket = before;
      else delete g.WebSocket;
    }
    expect(constructed).toEqual([]);
    const socket = session.connect('echo');
    const { readable, writable } = await socket.opened;
    const writer = writable.getWriter();
    await writer.write(new Uint8Array([1, 2, 3]));
    const { value } = await readable.getReader().read();
    expect([...value!]).toEqual([1, 2, 3]);
  });
});

describe('NodeWebSocket.corkTurn', () => {
  it("holds a turn's frames and hands them to the kernel together once the turn's promise jobs have run", async () => {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    const received: string[] = [];
    wss.on('connection', (peer) => peer.on('message', (m: Buffer) => received.push(m.toString())));
    const ws = new NodeWebSocket(`ws://127.0.0.1:${(wss.address() as net.AddressInfo).port}`);
    let socket!: net.Socket;
    ws.once('upgrade', (res: IncomingMessage) => (socket = res.socket as net.Socket));
    try {
      ws.corkTurn(); // before the handshake there is no socket yet: nothing to do
      await once(ws, 'open');
      expect(socket.writableCorked).toBe(0);

      ws.corkTurn();
      ws.corkTurn(); // once per turn
      ws.send('a');
      await Promise.resolve(); // a promise job later, still the same turn
      ws.send('b');
      expect(socket.writableCorked).toBe(1);
      expect(socket.writableLength).toBeGreaterThan(0); // both frames wait in the socket, not in the kernel
      await new Promise((r) => setImmediate(r));
      expect([socket.writableCorked, socket.writableLength]).toEqual([0, 0]);
      await waitFor(() => received.length === 2, 5000, 'both messages at the server');
      expect(received).toEqual(['a', 'b']);

      // A deferrable frame (a WINDOW) waits past its turn, until the loop's pending I/O has run.
      ws.corkTurn(true);
      ws.send('c');
      await new Promise((r) => process.nextTick(r));
      await Promise.resolve();
      expect([socket.writableCorked, received.length]).toEqual([1, 2]);
      await new Promise((r) => setImmediate(r));
      expect(socket.writableCorked).toBe(0);
      // ... unless another frame comes first: then both go at the end of that frame's turn.
      ws.corkTurn(true);
      ws.send('d');
      await new Promise((r) => process.nextTick(r));
      ws.corkTurn();
      ws.send('e');
      expect(socket.writableCorked).toBe(1);
      await new Promise((r) => process.nextTick(r));
      expect([socket.writableCorked, socket.writableLength]).toEqual([0, 0]);
      await waitFor(() => received.length === 5, 5000, 'the later messages at the server');
      expect(received).toEqual(['a', 'b', 'c', 'd', 'e']);
    } finally {
      ws.terminate();
      wss.close();
    }
  });
});

describe('NodeWebSocket reads frames itself (client/frame-reader.ts)', () => {
  /** Read a readable to its end: every chunk, as the application gets it. */
  async function chunksOf(readable: ReadableStream<Uint8Array>): Promise<Uint8Array[]> {
    const chunks: Uint8Array[] = [];
    const reader = readable.getReader();
    for (let i = 0; i < 100_000; i++) {
      const { value, done } = await reader.read();
      if (done) return chunks;
      chunks.push(value);
    }
    throw new Error('too many chunks');
  }

  it('delivers DATA payloads as views of the socket reads, byte-exact, while ws answers pings', async () => {
    const { server, session } = await setup();
    const n = 4 * 1024 * 1024 + 5;
    const socket = session.connect(`source-${n}`);
    await socket.opened;
    // Pings between DATA frames: ws answers each, so they went to ws and reading went on past them.
    const peer = server.websockets[0]!;
    let pongs = 0;
    peer.on('pong', () => pongs++);
    const pinger = setInterval(() => peer.ping(), 1);
    try {
      const chunks = await chunksOf(socket.readable);
      const got = Buffer.concat(chunks);
      expect(got.length).toBe(n);
      expect(sha256(got)).toBe(sha256(patternAt(0, n)));
      // ws hands each message over in a buffer of its own, 6 bytes of frame header before the payload; the
      // reader's pieces are views of 64 KiB socket reads, which hold parts of several messages.
      expect(chunks.filter((c) => c.buffer.byteLength !== c.byteLength + 6).length).toBeGreaterThan(chunks.length / 2);
      // Plain Uint8Arrays, as from ws before (a Buffer's slice() would not copy).
      expect(chunks.every((c) => Object.getPrototypeOf(c) === Uint8Array.prototype)).toBe(true);
    } finally {
      clearInterval(pinger);
    }
    await waitFor(() => pongs > 0, 5000, 'a pong');
  });

  it("the dial of the agent and the CLI tools (server/dial.ts) reads the same way, and closes cleanly", async () => {
    server = await startMuxServer();
    const dialed = await dial({ gateway: server.url.replace(/\/mux$/, ''), path: '/mux', handshakeTimeoutMs: 5000 });
    const n = 2 * 1024 * 1024 + 7;
    const stream = dialed.session.open(`source-${n}`);
    const chunks: Uint8Array[] = [];
    stream.onData = (c) => {
      chunks.push(c);
      stream.consume(c.length);
    };
    await waitFor(() => stream.remoteEnded, 10_000, 'the whole source');
    const got = Buffer.concat(chunks);
    expect(sha256(got)).toBe(sha256(patternAt(0, n)));
    expect(chunks.filter((c) => c.buffer.byteLength !== c.byteLength + 6).length).toBeGreaterThan(chunks.length / 2);
    dialed.session.close();
    // The close frame goes to ws (handed over), which completes the handshake: a clean 1000, not a lost 1006.
    expect((await dialed.closed).code).toBe(1000);
  });

  it('leaves a fragmented message to ws, which delivers it whole; DATA after it arrives as before', async () => {
    const { server, session } = await setup();
    const socket = session.connect('hold');
    const { readable } = await socket.opened;
    const peer = server.websockets[0]!;
    const id = server.ctx.streams[0]!.stream.id;
    const frame = encodeData(id, new Uint8Array([1, 2, 3, 4, 5]));
    peer.send(frame.subarray(0, 8), { binary: true, fin: false });
    peer.send(frame.subarray(8), { binary: true, fin: true });
    peer.send(encodeData(id, new Uint8Array([6, 7])), { binary: true });
    const reader = readable.getReader();
    const got: number[] = [];
    for (let i = 0; i < 10 && got.length < 7; i++) got.push(...(await reader.read()).value!);
    expect(got).toEqual([1, 2, 3, 4, 5, 6, 7]);
  });

  for (const [what, send, code] of [
    ['a text message: the SDK closes the session with 1003', (peer: import('ws').WebSocket) => peer.send('hello'), 1003],
    [
      'a message over MAX_FRAME_BYTES: ws refuses it from its header and closes with 1009',
      (peer: import('ws').WebSocket) => peer.send(new Uint8Array(MAX_FRAME_BYTES + 1)),
      1009,
    ],
  ] as const) {
    it(what, async () => {
      const { server, session } = await setup();
      const peer = server.websockets[0]!;
      const peerClosed = new Promise<number>((resolve) => peer.once('close', resolve));
      const closed = new Promise<void>((resolve) => session.addEventListener('close', () => resolve(), { once: true }));
      send(peer);
      expect(await peerClosed).toBe(code);
      await closed;
    });
  }
});
