/**
 * server/stream-socket.ts: an engine stream as a Node Duplex keeps credit end to end. Two in-memory sessions
 * (test/helpers/session-pair.ts): the server opens a stream toward the client, as the gateway does toward an agent.
 */
import { describe, expect, it } from 'vitest';
import { INITIAL_WINDOW } from '../../shared/constants.js';
import { SockgateError } from '../../shared/errors.js';
import type { Stream } from '../../shared/session.js';
import { StreamSocket } from '../../server/stream-socket.js';
import { sessionPair } from '../helpers/session-pair.js';

/** A server-opened stream wrapped as a StreamSocket, and the client's side of it (accepted). */
async function opened(): Promise<{ pair: ReturnType<typeof sessionPair>; socket: StreamSocket; peer: Stream }> {
  let peer: Stream | undefined;
  const pair = sessionPair({ onStream: (s) => ((peer = s), s.accept()) });
  const socket = new StreamSocket(pair.server.open('svc'));
  await pair.settle();
  await socket.opened;
  return { pair, socket, peer: peer! };
}

describe('StreamSocket', () => {
  it('holds the peer\'s credit while nobody reads, and returns it as bytes are read', async () => {
    const { pair, socket, peer } = await opened();
    const data = new Uint8Array(4 * INITIAL_WINDOW).fill(7);
    peer.write(data);
    await pair.settle();
    // Nothing read: the peer sent one window and waits.
    expect(peer.bufferedAmount).toBe(data.length - INITIAL_WINDOW);
    expect(socket.readableLength).toBe(INITIAL_WINDOW);
    let got = 0;
    socket.on('data', (c: Buffer) => (got += c.length));
    for (let i = 0; i < 50 && got < data.length; i++) await pair.settle();
    expect(got).toBe(data.length);
    expect(peer.bufferedAmount).toBe(0);
  });

  it('a reader that pauses inside its data handler keeps the credit of what it took until it resumes', async () => {
    const { pair, socket, peer } = await opened();
    let got = 0;
    socket.on('data', (c: Buffer) => {
      got += c.length;
      socket.pause(); // its own write returned false, say
    });
    peer.write(new Uint8Array(2 * INITIAL_WINDOW).fill(1));
    for (let i = 0; i < 5; i++) await pair.settle();
    expect(got).toBeLessThanOrEqual(INITIAL_WINDOW);
    expect(peer.bufferedAmount).toBe(INITIAL_WINDOW); // no credit came back
    socket.removeAllListeners('data');
    socket.on('data', (c: Buffer) => (got += c.length));
    socket.resume();
    for (let i = 0; i < 50 && got < 2 * INITIAL_WINDOW; i++) await pair.settle();
    expect(got).toBe(2 * INITIAL_WINDOW);
  });

  it('a write completes only once the engine took it: past the peer\'s window it waits for credit', async () => {
    const { pair, socket, peer } = await opened();
    const received: number[] = [];
    peer.onData = (c) => received.push(c.length); // read, but give no credit back yet
    const big = Buffer.alloc(INITIAL_WINDOW + 1000, 3);
    let done = false;
    expect(socket.write(big, () => (done = true))).toBe(false);
    await pair.settle();
    expect(done).toBe(false);
    expect(received.reduce((a, b) => a + b, 0)).toBe(INITIAL_WINDOW);
    peer.consume(INITIAL_WINDOW);
    for (let i = 0; i < 10 && !done; i++) await pair.settle();
    expect(done).toBe(true);
  });

  it('end() sends FIN after the data; the peer\'s FIN ends the readable; both close it cleanly', async () => {
    const { pair, socket, peer } = await opened();
    let peerEnded = false;
    peer.onEnd = () => (peerEnded = true);
    let closedWith: unknown = 'open';
    peer.onClose = (err) => (closedWith = err);
    const ended = new Promise<void>((r) => socket.once('end', () => r()));
    const closed = new Promise<void>((r) => socket.once('close', () => r()));
    socket.resume();
    socket.end(Buffer.from('bye'));
    peer.end();
    await pair.settle();
    await ended;
    await closed;
    expect(peerEnded).toBe(true);
    expect(closedWith).toBeUndefined();
  });

  it("the peer's RESET code comes out as the socket's error; destroy() resets the peer's stream", async () => {
    const a = await opened();
    const err = new Promise<Error>((r) => a.socket.once('error', r));
    a.peer.reset(new SockgateError('SOCKGATE_ERR_BACKEND_REFUSED', 'ECONNREFUSED: nope'));
    await a.pair.settle();
    expect(((await err) as SockgateError).code).toBe('SOCKGATE_ERR_BACKEND_REFUSED');

    const b = await opened();
    let peerErr: SockgateError | undefined;
    b.peer.onClose = (e) => (peerErr = e);
    b.socket.destroy();
    await b.pair.settle();
    expect(peerErr?.code).toBe('SOCKGATE_ERR_STREAM_CANCELLED');
  });

  it('a session that ends under the stream gives a stream code: BACKEND_RESET once open, ROUTE_UNAVAILABLE before', async () => {
    const a = await opened();
    const err = new Promise<Error>((r) => a.socket.once('error', r));
    a.pair.client.close(new SockgateError('SOCKGATE_ERR_SESSION_POLICY', 'bye'));
    await a.pair.settle();
    const e = (await err) as SockgateError;
    expect(e.code).toBe('SOCKGATE_ERR_BACKEND_RESET');
    expect(e.message).toContain('SOCKGATE_ERR_SESSION_POLICY');
    expect(e.wireCode).toBeDefined();

    const pair = sessionPair({ onStream: () => {} }); // never answers the OPEN
    const socket = new StreamSocket(pair.server.open('svc'));
    socket.on('error', () => {});
    await pair.settle();
    pair.server.close(new SockgateError('SOCKGATE_ERR_SESSION_PING_TIMEOUT'));
    await expect(socket.opened).rejects.toMatchObject({ code: 'SOCKGATE_ERR_ROUTE_UNAVAILABLE' });
  });
});
