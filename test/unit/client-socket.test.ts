/**
 * The socket adapter (client/socket.ts) over the in-memory session pair: credit, half-close, errors and close()
 * semantics, deterministically. test/unit/client-session.test.ts repeats the essentials over a real WebSocket.
 */
import { describe, expect, it } from 'vitest';
import { SockgateSocket } from '../../client/socket.js';
import { DrainPoller } from '../../client/transport.js';
import { INITIAL_WINDOW } from '../../shared/constants.js';
import { patternBytes, sha256 } from '../helpers/backends.js';
import { newServeContext, noiseBytes, readAll, rejectionOf, serveStream, writeAll, type ServeContext } from '../helpers/mux-server.js';
import { sessionPair, type Pair } from '../helpers/session-pair.js';

function setup(): { pair: Pair; ctx: ServeContext; connect: (route: string) => SockgateSocket } {
  const ctx = newServeContext();
  const pair = sessionPair({}, { onStream: (stream, route) => serveStream(ctx, stream, route) });
  const connect = (route: string): SockgateSocket => new SockgateSocket(route, pair.client.open(route));
  return { pair, ctx, connect };
}

function serverStream(ctx: ServeContext, route: string) {
  const found = ctx.streams.find((s) => s.route === route);
  if (!found) throw new Error(`no server stream for ${route}`);
  return found.stream;
}

describe('SockgateSocket: reading and credit', () => {
  it('tiny frames received while nobody reads are joined: a few reads take them all, in order', async () => {
    const { pair, ctx, connect } = setup();
    const socket = connect('echo');
    const { readable } = await socket.opened;
    await pair.settle();
    const server = serverStream(ctx, 'echo');
    const frames = 50_000; // 1-byte DATA frames, within the initial window
    for (let i = 0; i < frames; i++) server.write(Uint8Array.of(i & 0xff));
    await pair.settle();
    server.end();
    await pair.settle();
    const reader = readable.getReader();
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < 10_000; i++) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
    // One queue entry per 16 KiB, not one per frame.
    expect(chunks.length).toBeLessThan(10);
    const all = Buffer.concat(chunks);
    expect(all.length).toBe(frames);
    expect(all.every((b, i) => b === (i & 0xff))).toBe(true);
  });

  it('a reader that stops reading withholds credit: the sender stops at INITIAL_WINDOW', async () => {
    const { pair, ctx, connect } = setup();
    const total = 1024 * 1024;
    const socket = connect(`source-${total}`);
    const { readable } = await socket.opened;
    await pair.settle();
    const server = serverStream(ctx, `source-${total}`);
    // Nothing was read, so no credit came back: exactly one window is in flight and the rest waits at the source.
    expect(server.credit.sent).toBe(INITIAL_WINDOW);
    expect(server.bufferedAmount).toBeGreaterThan(0);

    // Reading a little less than half a window sends no WINDOW (PROTOCOL 5.5); the sender stays blocked.
    const reader = readable.getReader();
    let read = 0;
    for (let i = 0; i < 100 && read + 64 * 1024 < INITIAL_WINDOW / 2; i++) read += (await reader.read()).value!.length;
    await pair.settle();
    expect(server.credit.sent).toBe(INITIAL_WINDOW);

    // Reading the rest returns credit as we go, and the whole stream arrives intact.
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < 10_000; i++) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      read += value.length;
    }
    expect(read).toBe(total);
    const rest = Buffer.concat(chunks);
    expect(sha256(rest)).toBe(sha256(patternBytes(total).subarray(total - rest.length)));
    await socket.writable.close();
    await socket.closed;
  });

  it('round-trips bytes through echo with half-close both ways', async () => {
    const { connect } = setup();
    const socket = connect('echo');
    const { readable, writable } = await socket.opened;
    const data = noiseBytes(INITIAL_WINDOW * 3 + 123);
    const [echoed] = await Promise.all([readAll(readable), writeAll(writable, data, 10_000)]);
    expect(echoed.length).toBe(data.length);
    expect(sha256(echoed)).toBe(sha256(data));
    await socket.closed;
  });

  it('delivers the peer FIN as the readable ending, while our side can still write', async () => {
    const { pair, ctx, connect } = setup();
    const socket = connect('source-10');
    const { readable, writable } = await socket.opened;
    expect(await readAll(readable)).toEqual(new Uint8Array(patternBytes(10)));
    const writer = writable.getWriter();
    await writer.write(new Uint8Array([1, 2, 3]));
    await pair.settle();
    expect(serverStream(ctx, 'source-10').bytesIn).toBe(3);
    await writer.close();
    await socket.closed;
  });
});

describe('SockgateSocket: writing', () => {
  it('a write resolves only once the engine took it; bufferedAmount counts what waits for credit', async () => {
    const { pair, connect } = setup();
    const socket = connect('hold');
    const writer = socket.writable.getWriter();
    await socket.opened;
    const first = writer.write(new Uint8Array(INITIAL_WINDOW));
    await first; // exactly one window: fits the credit
    let settled = false;
    const second = writer.write(new Uint8Array(1000));
    second.then(
      () => (settled = true),
      () => (settled = true),
    );
    await pair.settle();
    expect(settled).toBe(false);
    expect(socket.bufferedAmount).toBe(1000);
    socket.reset();
    expect((await rejectionOf(second)).code).toBe('SOCKGATE_ERR_STREAM_CANCELLED');
    await socket.closed; // our own reset: closed resolves
  });

  it('writes before OPEN_OK go out within the initial window and are echoed once accepted', async () => {
    const { connect } = setup();
    const socket = connect('late-echo');
    const data = noiseBytes(50_000, 7);
    const writing = writeAll(socket.writable, data, 4096);
    const echoed = readAll(socket.readable);
    await socket.opened;
    await writing;
    expect(sha256(await echoed)).toBe(sha256(data));
    await socket.closed;
  });

  it('waits for the transport: with the WebSocket full, DATA is held until the drain poller sees room', async () => {
    const { pair, ctx } = setup();
    const poller = new DrainPoller(pair.client, 5);
    const socket = new SockgateSocket('sink', pair.client.open('sink'), { poke: () => poller.check(), release: () => {} });
    await socket.opened;
    pair.setClientBuffered(2 * 1024 * 1024); // above the engine's maxTransportBufferedBytes (1 MiB)
    const writer = socket.writable.getWriter();
    let done = false;
    const write = writer.write(noiseBytes(10_000)).then(() => (done = true));
    await pair.settle();
    expect(done).toBe(false);
    expect(pair.client.wantsDrain).toBe(true);
    pair.setClientBuffered(0);
    await write;
    expect(pair.client.wantsDrain).toBe(false);
    await writer.close();
    await socket.close();
    expect(ctx.sinkResults).toEqual([{ bytes: 10_000, sha256: sha256(noiseBytes(10_000)) }]);
    poller.stop();
  });

  it('rejects chunks that are not bytes', async () => {
    const { connect } = setup();
    const socket = connect('echo');
    const writer = socket.writable.getWriter();
    const err = await rejectionOf(writer.write('text' as unknown as Uint8Array));
    expect(err).toBeInstanceOf(TypeError);
  });
});

describe('SockgateSocket: errors carry registry codes', () => {
  it('OPEN_FAIL rejects opened and closed and errors both streams with the code', async () => {
    const { connect } = setup();
    const socket = connect('refused');
    const err = await rejectionOf(socket.opened);
    expect(err.code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
    expect(err.message).toContain('ECONNREFUSED');
    expect((await rejectionOf(socket.closed)).code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
    expect((await rejectionOf(socket.readable.getReader().read())).code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
    expect((await rejectionOf(socket.writable.getWriter().write(new Uint8Array(1)))).code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
  });

  it('an unknown route is SOCKGATE_ERR_ROUTE_UNKNOWN', async () => {
    const { connect } = setup();
    expect((await rejectionOf(connect('nope').opened)).code).toBe('SOCKGATE_ERR_ROUTE_UNKNOWN');
  });

  it('a RESET from the peer errors the readable and rejects closed', async () => {
    const { connect } = setup();
    const socket = connect('reset');
    const { readable, writable } = await socket.opened;
    const reading = rejectionOf(readable.getReader().read());
    await writable.getWriter().write(new Uint8Array([1]));
    expect((await reading).code).toBe('SOCKGATE_ERR_BACKEND_RESET');
    expect((await rejectionOf(socket.closed)).code).toBe('SOCKGATE_ERR_BACKEND_RESET');
  });

  it('closing the session ends open sockets with SOCKGATE_ERR_SESSION_CLOSED', async () => {
    const { pair, connect } = setup();
    const socket = connect('echo');
    await socket.opened;
    pair.client.close();
    expect((await rejectionOf(socket.closed)).code).toBe('SOCKGATE_ERR_SESSION_CLOSED');
    expect((await rejectionOf(socket.readable.getReader().read())).code).toBe('SOCKGATE_ERR_SESSION_CLOSED');
  });
});

describe('SockgateSocket: cancel, abort, reset and close()', () => {
  it('readable.cancel() resets the stream with SOCKGATE_ERR_STREAM_CANCELLED; closed resolves', async () => {
    const { pair, ctx, connect } = setup();
    const socket = connect('echo');
    const { readable, writable } = await socket.opened;
    await readable.cancel();
    await pair.settle();
    expect(serverStream(ctx, 'echo').error?.code).toBe('SOCKGATE_ERR_STREAM_CANCELLED');
    await socket.closed;
    expect((await rejectionOf(writable.getWriter().write(new Uint8Array(1)))).code).toBe('SOCKGATE_ERR_STREAM_CANCELLED');
  });

  it('readable.cancel() after the peer finished sending drops data without resetting our direction', async () => {
    const { pair, ctx, connect } = setup();
    const socket = connect('source-100');
    const { readable, writable } = await socket.opened;
    await pair.settle(); // the 100 bytes and FIN are in, unread
    await readable.cancel();
    const writer = writable.getWriter();
    await writer.write(new Uint8Array(5));
    await writer.close();
    await socket.closed;
    expect(serverStream(ctx, 'source-100').error).toBeUndefined();
    expect(serverStream(ctx, 'source-100').bytesIn).toBe(5);
  });

  it('writable.abort() resets the stream', async () => {
    const { pair, ctx, connect } = setup();
    const socket = connect('echo');
    await socket.opened;
    await socket.writable.abort(new Error('changed my mind'));
    await pair.settle();
    expect(serverStream(ctx, 'echo').error?.code).toBe('SOCKGATE_ERR_STREAM_CANCELLED');
    await socket.closed;
    expect((await rejectionOf(socket.readable.getReader().read())).code).toBe('SOCKGATE_ERR_STREAM_CANCELLED');
  });

  it('close() sends everything written, even writes not awaited, then FIN', async () => {
    const { ctx, connect } = setup();
    const socket = connect('sink');
    const data = noiseBytes(INITIAL_WINDOW * 2 + 5, 3);
    const writer = socket.writable.getWriter();
    for (let at = 0; at < data.length; at += 30_000) void writer.write(data.subarray(at, at + 30_000));
    writer.releaseLock(); // queued writes stay queued in the WritableStream
    await socket.close();
    expect(ctx.sinkResults).toEqual([{ bytes: data.length, sha256: sha256(data) }]);
  });

  it('close() drops unread input so an echo peer is never blocked on us', async () => {
    const { ctx, connect } = setup();
    const socket = connect('echo');
    const data = noiseBytes(INITIAL_WINDOW * 4, 5); // more than the echo can hold back without our reads
    const writer = socket.writable.getWriter();
    for (let at = 0; at < data.length; at += 64 * 1024) void writer.write(data.subarray(at, at + 64 * 1024));
    writer.releaseLock();
    await socket.close();
    expect(serverStream(ctx, 'echo').bytesIn).toBe(data.length);
    expect(serverStream(ctx, 'echo').bytesOut).toBe(data.length);
  });

  it('close() with a writer still held ends after the write in progress; later writes reject', async () => {
    const { ctx, connect } = setup();
    const socket = connect('sink');
    const writer = socket.writable.getWriter();
    await writer.write(new Uint8Array(10));
    await socket.close();
    expect(ctx.sinkResults).toEqual([{ bytes: 10, sha256: sha256(new Uint8Array(10)) }]);
    expect((await rejectionOf(writer.write(new Uint8Array(1)))).code).toBe('SOCKGATE_ERR_STREAM_CLOSED');
  });

  it('close() with a reader still held waits for the peer to finish; the reader gets everything', async () => {
    const { connect } = setup();
    const socket = connect('echo');
    const reader = socket.readable.getReader();
    const writer = socket.writable.getWriter();
    await writer.write(new Uint8Array([9, 8, 7]));
    writer.releaseLock();
    const closing = socket.close();
    const got: number[] = [];
    for (let i = 0; i < 10; i++) {
      const { done, value } = await reader.read();
      if (done) break;
      got.push(...value);
    }
    expect(got).toEqual([9, 8, 7]);
    await closing;
  });

  it('close() on a failed socket rejects with its error', async () => {
    const { connect } = setup();
    const socket = connect('refused');
    expect((await rejectionOf(socket.close())).code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');
  });

  it('a socket the session could not open rejects with the engine error', async () => {
    const { pair } = setup();
    pair.client.close();
    let socket!: SockgateSocket;
    try {
      pair.client.open('echo');
    } catch (err) {
      socket = new SockgateSocket('echo', err as never);
    }
    expect((await rejectionOf(socket.opened)).code).toBe('SOCKGATE_ERR_SDK_NOT_CONNECTED');
    expect((await rejectionOf(socket.closed)).code).toBe('SOCKGATE_ERR_SDK_NOT_CONNECTED');
  });
});
