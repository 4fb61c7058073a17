/**
 * server/bridge.ts against a real loopback socket: a peer's tiny DATA frames, held while the backend connects or
 * while its buffer is full, must not each become a socket write (their bookkeeping would multiply the window's
 * bytes), and every byte must still reach the backend, in order.
 */
import net from 'node:net';
import { Duplex } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { bridgeStream } from '../../server/bridge.js';
import { waitFor } from '../helpers/backends.js';
import { sessionPair } from '../helpers/session-pair.js';

const quiet = { info() {}, debug() {}, error() {} };
const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

describe('bridge: peer bytes waiting for the socket', () => {
  it('joins tiny frames instead of buffering one write per frame, and delivers them all in order', async () => {
    // A backend that does not read until told to.
    let accepted: net.Socket | undefined;
    const received: Buffer[] = [];
    const server = net.createServer((s) => {
      accepted = s;
      s.pause();
      s.on('data', (d: Buffer) => received.push(d));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => server.close());
    const socket = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    closers.push(() => socket.destroy());
    // Count the writes the bridge makes (instrumentation: the socket itself is real).
    let writes = 0;
    const write = socket.write.bind(socket) as (chunk: Uint8Array) => boolean;
    socket.write = ((chunk: Uint8Array) => (writes++, write(chunk))) as typeof socket.write;

    // The frames arrive while the backend is still connecting (the same queue holds them while its buffer is
    // full): the opener may send within the initial window before OPEN_OK (PROTOCOL 4.2).
    let connected: (s: net.Socket) => void = () => {};
    const connecting = new Promise<net.Socket>((r) => (connected = r));
    const pair = sessionPair({}, { onStream: (s) => bridgeStream(s, { connect: () => connecting, log: quiet }) });
    const stream = pair.client.open('backend');
    const frames = 100_000; // 1-byte DATA frames, within the initial window (256 KiB)
    for (let i = 0; i < frames; i++) stream.write(Uint8Array.of(i & 0xff));
    await pair.settle();
    connected(socket);
    await pair.settle();
    // Without joining this was one write per frame: 100,000 chunks, each with its own bookkeeping.
    expect(writes).toBeLessThan(100);

    accepted!.resume();
    await waitFor(() => received.reduce((n, b) => n + b.length, 0) >= frames, 20_000, 'every byte at the backend');
    const all = Buffer.concat(received);
    expect(all.length).toBe(frames);
    expect(all.every((b, i) => b === (i & 0xff))).toBe(true);
  });
});

describe('bridge: a clean close with bytes still waiting for the socket', () => {
  it('writes them all, then ends the socket: both FINs close the stream, not what the socket still has to take', async () => {
    // The other side as `sockgate connect` has it (stdin and stdout as one Duplex): its input ends at once (so our
    // FIN goes first), and its output takes a write only when the test lets it (stdout into a slow pipe).
    const taken: Buffer[] = [];
    const held: (() => void)[] = [];
    let ended = false;
    const side = new Duplex({
      writableHighWaterMark: 16 * 1024,
      read() {},
      write(chunk: Buffer, _encoding, done) {
        taken.push(chunk);
        held.push(done);
      },
      final(done) {
        ended = true;
        done();
      },
    });
    side.push(null);
    let closeErr: unknown = 'open';
    const pair = sessionPair({}, { onStream: (s) => bridgeStream(s, { connect: async () => side, log: quiet, onClose: (err) => (closeErr = err) }) });
    const stream = pair.client.open('backend');
    const payload = Buffer.alloc(200 * 1024, 7); // within the initial window: no credit needed
    for (let at = 0; at < payload.length; at += 64 * 1024) stream.write(payload.subarray(at, at + 64 * 1024));
    stream.end();
    await pair.settle();
    // Both FINs crossed: the stream closed cleanly while most of the payload still waits for the socket.
    expect(closeErr).toBeUndefined();
    expect(taken.reduce((n, b) => n + b.length, 0)).toBeLessThan(payload.length);

    for (let i = 0; i < 1000 && !ended; i++) {
      for (const done of held.splice(0)) done();
      await new Promise((r) => setImmediate(r));
    }
    expect(Buffer.concat(taken).equals(payload)).toBe(true);
    expect(ended).toBe(true);
  });
});
