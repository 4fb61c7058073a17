/**
 * Performance behaviour of the engine and the SDK transport that the protocol leaves to the implementation:
 * RTT probes for window auto-tuning (PROTOCOL 5.5), round-robin order for streams waiting on the transport, and
 * send callbacks standing in for a drain event. None of it changes what goes on the wire beyond PINGs.
 */
import { describe, expect, it } from 'vitest';
import { FrameType, INITIAL_WINDOW, MAX_DATA_PAYLOAD, MAX_FRAME_BYTES } from '../../shared/constants.js';
import { encodeData } from '../../shared/encode.js';
import { Session, type Stream, type Transport } from '../../shared/session.js';
import { WebSocketTransport, type WebSocketLike } from '../../client/transport.js';
import { sessionPair } from '../helpers/session-pair.js';

const bytes = (n: number): Uint8Array => new Uint8Array(n).fill(7);

describe('rttProbeIntervalMs', () => {
  it('off by default: a receiver sends WINDOW frames and no PING', async () => {
    let server: Stream | undefined;
    const pair = sessionPair(
      {},
      {
        onStream: (s) => {
          s.accept();
          server = s;
        },
      },
    );
    const stream = pair.client.open('x');
    stream.onData = (chunk) => stream.consume(chunk.length);
    await pair.settle();
    server!.write(bytes(2 * INITIAL_WINDOW));
    await pair.settle();
    const types = pair.frames('client').map((f) => f.type);
    expect(types).toContain(FrameType.WINDOW);
    expect(types).not.toContain(FrameType.PING);
  });

  it('refreshes the RTT with a PING when a WINDOW goes out, at most once per interval', async () => {
    let now = 0;
    let server: Stream | undefined;
    const pair = sessionPair(
      { rttProbeIntervalMs: 100, now: () => now },
      {
        onStream: (s) => {
          s.accept();
          server = s;
        },
      },
    );
    const stream = pair.client.open('x');
    stream.onData = (chunk) => stream.consume(chunk.length);
    await pair.settle();
    server!.write(bytes(INITIAL_WINDOW)); // one window: two WINDOWs, one PING (the second is within the interval)
    await pair.settle();
    const pings = (): number => pair.frames('client').filter((f) => f.type === FrameType.PING).length;
    expect(pings()).toBe(1);
    expect(pair.client.rtt).toBe(0); // measured: auto-tuning has an RTT to compare with
    server!.write(bytes(INITIAL_WINDOW));
    await pair.settle();
    expect(pings()).toBe(1); // same instant: within the interval
    now += 100;
    server!.write(bytes(INITIAL_WINDOW));
    await pair.settle();
    expect(pings()).toBe(2);
    expect(pair.client.pendingPings).toBe(0);
  });
});

describe('transport backpressure: waiting streams keep their turn', () => {
  it('a stream that writes while others wait for the transport queues behind them', async () => {
    const pair = sessionPair({ maxTransportBufferedBytes: 1000 }, { onStream: (s) => s.accept() });
    const a = pair.client.open('a');
    const b = pair.client.open('b');
    const c = pair.client.open('c');
    await pair.settle();
    pair.setClientBuffered(5000);
    expect(a.write(bytes(2 * MAX_DATA_PAYLOAD))).toBe(false);
    expect(b.write(bytes(2 * MAX_DATA_PAYLOAD))).toBe(false);
    // Room again, but a and b are waiting for the drain: c must not jump ahead of them.
    pair.setClientBuffered(0);
    expect(c.write(bytes(MAX_DATA_PAYLOAD))).toBe(false);
    pair.client.transportDrained();
    const order = pair.frames('client').flatMap((f) => (f.type === FrameType.DATA ? [f.streamId] : []));
    expect(order).toEqual([1, 3, 5, 1, 3]);
    await pair.settle();
  });
});

describe('borrowed writes (a shared read buffer reused after write returns)', () => {
  /** The DATA payloads the server received on a stream, joined. */
  function received(stream: Stream): () => Uint8Array {
    const parts: Uint8Array[] = [];
    stream.onData = (d) => {
      parts.push(d.slice());
      stream.consume(d.length);
    };
    return () => Buffer.concat(parts);
  }

  it('a chunk the transport cannot take now is kept as a copy', async () => {
    let got: (() => Uint8Array) | undefined;
    const pair = sessionPair({ maxTransportBufferedBytes: 1000 }, { onStream: (s) => (s.accept(), (got = received(s))) });
    const stream = pair.client.open('r');
    await pair.settle();
    const shared = new Uint8Array(2 * MAX_DATA_PAYLOAD + 5).map((_, i) => (i * 7 + 3) & 0xff);
    const original = shared.slice();
    pair.setClientBuffered(5000); // the WebSocket is "full": nothing can go out yet
    expect(stream.write(shared, true)).toBe(false);
    shared.fill(0xee); // the caller reuses its buffer at once
    pair.setClientBuffered(0);
    pair.client.transportDrained();
    await pair.settle();
    // Compared as one boolean: a diff of two 128 KiB arrays would take the reporter minutes.
    expect(Buffer.from(got!()).equals(original)).toBe(true);
  });

  it('what the credit covers goes out at once; only the rest is copied, to wait for WINDOW', async () => {
    let got: (() => Uint8Array) | undefined;
    const pair = sessionPair({}, { onStream: (s) => (s.accept(), (got = received(s))) });
    const stream = pair.client.open('r');
    await pair.settle();
    const first = new Uint8Array(INITIAL_WINDOW - 1000).fill(1); // leaves 1000 bytes of credit
    expect(stream.write(first)).toBe(true);
    const sentBefore = pair.sent.client.length;
    const shared = new Uint8Array(3000).fill(0x42);
    expect(stream.write(shared, true)).toBe(false);
    expect(pair.sent.client.length).toBe(sentBefore + 1); // 1000 bytes went out within the credit
    expect(stream.bufferedAmount).toBe(2000);
    shared.fill(0); // reused before any credit came back
    await pair.settle();
    const all = got!();
    expect(all.length).toBe(INITIAL_WINDOW + 2000);
    expect(all.subarray(0, first.length).every((b) => b === 1)).toBe(true);
    expect(all.subarray(first.length).every((b) => b === 0x42)).toBe(true);
  });
});

describe('WebSocketTransport send callbacks', () => {
  function fakeWs(withOn: boolean): WebSocketLike & { calls: unknown[][] } {
    const ws = {
      binaryType: 'arraybuffer',
      bufferedAmount: 0,
      protocol: 'sockgate.v1',
      readyState: 1,
      calls: [] as unknown[][],
      send(...args: unknown[]) {
        ws.calls.push(args);
      },
      close() {},
      addEventListener() {},
      ...(withOn ? { on() {} } : {}),
    };
    return ws;
  }

  it('passes a callback to ws (an EventEmitter) and reports each send through onSent', () => {
    const ws = fakeWs(true);
    const transport = new WebSocketTransport(ws);
    let sent = 0;
    transport.onSent = () => sent++;
    transport.send(new Uint8Array(4));
    expect(transport.notifiesSent).toBe(true);
    expect(ws.calls[0]).toHaveLength(2);
    (ws.calls[0]![1] as () => void)();
    expect(sent).toBe(1);
  });

  it('with callbacks, builds large DATA frames in memory it takes back once ws wrote them', () => {
    const ws = fakeWs(true);
    const transport = new WebSocketTransport(ws);
    let sent = 0;
    transport.onSent = () => sent++;
    expect(transport.frameBuffer(100)).toBeUndefined(); // small frames are allocated as before
    const first = transport.frameBuffer(MAX_FRAME_BYTES)!;
    transport.send(first.subarray(0, 70_000 - 4470));
    // Not written yet: the next frame must not share its memory.
    const second = transport.frameBuffer(MAX_FRAME_BYTES)!;
    expect(second.buffer).not.toBe(first.buffer);
    (ws.calls[0]![1] as () => void)(); // ws wrote the first frame
    expect(sent).toBe(1);
    expect(transport.frameBuffer(MAX_FRAME_BYTES)!.buffer).toBe(first.buffer);
  });

  it('without callbacks (browsers), never hands out recycled memory', () => {
    const transport = new WebSocketTransport(fakeWs(false));
    expect(transport.frameBuffer(MAX_FRAME_BYTES)).toBeUndefined();
  });

  it('hands DATA to a WebSocket that frames it itself (sendData), corked, and falls back to send when it cannot', () => {
    const calls: unknown[][] = [];
    let accepts = true;
    const ws = {
      ...fakeWs(true),
      corkTurn: () => calls.push(['cork']),
      sendData: (...args: unknown[]) => (calls.push(['sendData', ...args]), accepts),
      send: (...args: unknown[]) => calls.push(['send', ...args]),
    };
    const transport = new WebSocketTransport(ws);
    let sent = 0;
    transport.onSent = () => sent++;
    const payload = bytes(20_000);
    transport.sendData(5, payload);
    expect(calls.map((c) => c[0])).toEqual(['cork', 'sendData']);
    expect(calls[1]!.slice(1, 3)).toEqual([5, payload]);
    (calls[1]![3] as () => void)(); // written
    expect(sent).toBe(1);

    accepts = false; // e.g. the WebSocket is closing
    calls.length = 0;
    transport.sendData(7, payload);
    expect(calls.map((c) => c[0])).toEqual(['cork', 'sendData', 'cork', 'send']);
    expect(calls[3]![1]).toEqual(encodeData(7, payload));

    // A WebSocket without sendData (browsers) gets the encoded frame; a closed one gets nothing.
    const plain = fakeWs(false);
    new WebSocketTransport(plain).sendData(9, payload);
    expect(plain.calls).toEqual([[encodeData(9, payload)]]);
    const closed = { ...fakeWs(false), readyState: 3 };
    new WebSocketTransport(closed).sendData(9, payload);
    expect(closed.calls).toEqual([]);
  });

  it('calls a browser-style send with the message only', () => {
    const ws = fakeWs(false);
    const transport = new WebSocketTransport(ws);
    transport.send(new Uint8Array(4));
    expect(transport.notifiesSent).toBe(false);
    expect(ws.calls[0]).toHaveLength(1);
  });
});

describe('Transport.sendData', () => {
  it('carries every DATA frame when the transport has it, cut at MAX_DATA_PAYLOAD, and nothing else', () => {
    const data: [number, Uint8Array][] = [];
    const messages: Uint8Array[] = [];
    const transport: Transport = {
      bufferedAmount: 0,
      send: (m) => messages.push(m),
      sendData: (id, chunk) => data.push([id, new Uint8Array(chunk)]),
      close() {},
    };
    const session = new Session({ role: 'client', transport });
    const stream = session.open('echo');
    const chunk = Uint8Array.from({ length: MAX_DATA_PAYLOAD + 10 }, (_, i) => i & 0xff);
    stream.write(chunk);
    stream.end();
    expect(data.map(([id, c]) => [id, c.length])).toEqual([
      [1, MAX_DATA_PAYLOAD],
      [1, 10],
    ]);
    expect(Buffer.concat(data.map(([, c]) => c)).equals(chunk)).toBe(true);
    // OPEN and FIN still go through send().
    expect(messages.map((m) => m[0])).toEqual([FrameType.OPEN, FrameType.FIN]);
  });
});
