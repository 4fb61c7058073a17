/**
 * client/frame-reader.ts: WebSocket frames read off the socket. DATA payloads go on as views of the reads, other
 * binary messages whole, control frames to ws, and anything else to ws with all that follows; in order, however
 * the bytes are split into reads. Both sides: a client reading a server's frames (none masked), and the gateway
 * reading a client's (each masked, unmasked in place).
 */
import fc from 'fast-check';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { FrameReader, readFramesBeside, type Unmask } from '../../client/frame-reader.js';
import { unmaskInPlace } from '../../client/masked-frames.js';
import { FrameType, HEADER_BYTES, MAX_DATA_PAYLOAD, MAX_FRAME_BYTES } from '../../shared/constants.js';
import { encodeData, encodeFrame, encodeWindow } from '../../shared/encode.js';
import { dataArb, frameArb, hexOf } from '../helpers/frames.js';
import { waitFor } from '../helpers/backends.js';
import { concat, noiseBytes } from '../helpers/mux-server.js';
import { wssPair } from '../helpers/tls.js';

type Event = { k: 'data'; id: number; hex: string } | { k: 'message'; hex: string } | { k: 'ws' | 'handOver'; hex: string };

/** A server's WebSocket frame (RFC 6455 5.2): unmasked unless `mask` is given; `long` uses the 64-bit length. */
function wsFrame(opcode: number, payload: Uint8Array, opts: { fin?: boolean; rsv?: number; mask?: Uint8Array; long?: boolean; claim?: number } = {}): Uint8Array {
  const n = opts.claim ?? payload.length;
  const ext = opts.long || n > 0xffff ? 8 : n > 125 ? 2 : 0;
  const head = new Uint8Array(2 + ext + (opts.mask ? 4 : 0));
  head[0] = (opts.fin === false ? 0 : 0x80) | (opts.rsv ?? 0) | opcode;
  head[1] = (opts.mask ? 0x80 : 0) | (ext === 8 ? 127 : ext === 2 ? 126 : n);
  const view = new DataView(head.buffer);
  if (ext === 2) view.setUint16(2, n);
  if (ext === 8) view.setBigUint64(2, BigInt(n));
  if (opts.mask) head.set(opts.mask, 2 + ext);
  const frame = new Uint8Array(head.length + payload.length);
  frame.set(head);
  frame.set(opts.mask ? payload.map((b, i) => b ^ opts.mask![i & 3]!) : payload, head.length);
  return frame;
}

/** What the reader should make of one well-formed binary message. */
function expectedFor(message: Uint8Array): Event {
  const isData =
    message.length > HEADER_BYTES &&
    message[0] === FrameType.DATA &&
    message[1] === 0 &&
    new DataView(message.buffer, message.byteOffset).getUint32(2) !== 0 &&
    message.length - HEADER_BYTES <= MAX_DATA_PAYLOAD;
  return isData
    ? { k: 'data', id: new DataView(message.buffer, message.byteOffset).getUint32(2), hex: hexOf(message.subarray(HEADER_BYTES)) }
    : { k: 'message', hex: hexOf(message) };
}

/** Append an event, joining bytes that go to ws one after the other (the reader may pass them in any pieces). */
function add(events: Event[], e: Event): void {
  const last = events.at(-1);
  if ((e.k === 'ws' || e.k === 'handOver') && last?.k === e.k) last.hex += e.hex;
  else events.push(e);
}

/**
 * Feed `chunks` (each copied into memory of its own, as socket reads are) and record what comes out; `unmask`
 * given: the reader reads a client's frames.
 */
function run(chunks: readonly Uint8Array[], maxMessageBytes = MAX_FRAME_BYTES, unmask?: Unmask): { events: Event[]; foreignPieces: number } {
  const events: Event[] = [];
  const reads = chunks.map((c) => c.slice());
  let foreignPieces = 0;
  const reader = new FrameReader(
    {
      receive: (bytes) => add(events, { k: 'message', hex: hexOf(bytes) }),
      receiveDataHead: (id, length) => {
        expect(length).toBeGreaterThan(0);
        events.push({ k: 'data', id, hex: '' });
      },
      receiveDataPiece: (piece) => {
        // A view of one of the reads, never a copy.
        if (!reads.some((r) => r.buffer === piece.buffer)) foreignPieces++;
        const last = events.at(-1)!;
        last.hex += hexOf(piece);
      },
    },
    { frame: (bytes) => add(events, { k: 'ws', hex: hexOf(bytes) }), handOver: (rest) => add(events, { k: 'handOver', hex: hexOf(rest) }) },
    maxMessageBytes,
    unmask,
  );
  for (const read of reads) reader.push(read);
  return { events, foreignPieces };
}

/** Split `bytes` at the given offsets (taken modulo its length). */
function split(bytes: Uint8Array, cuts: readonly number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].filter((c) => c > 0).sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const c of [...at, bytes.length]) {
    out.push(bytes.subarray(from, c));
    from = c;
  }
  return out.filter((c) => c.length > 0);
}

/** A masking key for a client's frame, or none for a server's. */
const keyArb = (masked: boolean): fc.Arbitrary<Uint8Array | undefined> =>
  masked ? fc.uint8Array({ minLength: 4, maxLength: 4 }) : fc.constant(undefined);

/** One frame the reader routes and keeps reading after: its bytes and what it should become. */
const routedArb = (masked: boolean): fc.Arbitrary<{ bytes: Uint8Array; event: Event }> =>
  fc.oneof(
    // DATA, the common case, in any length form.
    fc.record({ id: fc.integer({ min: 1, max: 0xffff_ffff }), data: dataArb, long: fc.boolean(), mask: keyArb(masked) }).map(({ id, data, long, mask }) => {
      const message = encodeData(id, data);
      return { bytes: wsFrame(0x2, message, { long, mask }), event: expectedFor(message) };
    }),
    // Every other sockgate frame, whole.
    fc.record({ frame: frameArb(), mask: keyArb(masked) }).map(({ frame, mask }) => {
      const message = encodeFrame(frame);
      return { bytes: wsFrame(0x2, message, { mask }), event: expectedFor(message) };
    }),
    // Any binary message at all, malformed ones included (flags set, stream 0, truncated): the engine decides.
    fc.record({ message: fc.uint8Array({ maxLength: 24 }), mask: keyArb(masked) }).map(({ message, mask }) => ({
      bytes: wsFrame(0x2, message, { mask }),
      event: expectedFor(message),
    })),
    // Pings and pongs go to ws as they came (ws unmasks a client's), and reading goes on after them.
    fc.record({ opcode: fc.constantFrom(0x9, 0xa), payload: fc.uint8Array({ maxLength: 125 }), mask: keyArb(masked) }).map(({ opcode, payload, mask }) => {
      const bytes = wsFrame(opcode, payload, { mask });
      return { bytes, event: { k: 'ws', hex: hexOf(bytes) } as Event };
    }),
  );

/**
 * A frame after which ws reads everything: a close, a text message, and what ws's own checks refuse, among them a
 * frame masked the wrong way for the side (a server's frames are never masked, a client's always are).
 */
const handOverArb = (masked: boolean): fc.Arbitrary<Uint8Array> => {
  const key = masked ? new Uint8Array([9, 8, 7, 6]) : undefined;
  const wrong = masked ? undefined : new Uint8Array([1, 2, 3, 4]);
  return fc.oneof(
    fc.constant(wsFrame(0x8, new Uint8Array([0x03, 0xe8]), { mask: key })),
    fc.constant(wsFrame(0x8, new Uint8Array(0), { mask: key })),
    fc.constant(wsFrame(0x1, new TextEncoder().encode('text'), { mask: key })),
    fc.constant(wsFrame(0x2, encodeWindow(1, 0, 1), { fin: false, mask: key })),
    fc.constant(wsFrame(0x0, encodeWindow(1, 0, 1), { mask: key })),
    fc.constant(wsFrame(0x2, encodeWindow(1, 0, 1), { rsv: 0x40, mask: key })),
    fc.constant(wsFrame(0x2, encodeWindow(1, 0, 1), { mask: wrong })),
    fc.constant(wsFrame(0x2, encodeData(1, new Uint8Array(70)), { mask: wrong })),
    fc.constant(wsFrame(0x9, new Uint8Array(2), { mask: wrong })),
    fc.constant(wsFrame(0x3, new Uint8Array(3), { mask: key })),
    fc.constant(wsFrame(0x9, new Uint8Array(126), { mask: key })),
    fc.constant(wsFrame(0x9, new Uint8Array(4), { fin: false, mask: key })),
    fc.constant(wsFrame(0x2, new Uint8Array(0), { claim: MAX_FRAME_BYTES + 1, mask: key })),
    fc.constant(wsFrame(0x2, new Uint8Array(0), { claim: 2 ** 40, mask: key })),
  );
};

describe.each([
  { side: "a server's frames (the SDK, the agent's dial)", masked: false },
  { side: "a client's frames, masked (the gateway)", masked: true },
])('FrameReader, reading $side', ({ masked }) => {
  const unmask = masked ? unmaskInPlace : undefined;
  const frame = (opcode: number, payload: Uint8Array, opts: { fin?: boolean; claim?: number } = {}): Uint8Array =>
    wsFrame(opcode, payload, { ...opts, mask: masked ? new Uint8Array([0xa5, 0x5a, 0x0f, 0xf0]) : undefined });

  it('routes every frame as it would whole, however the bytes are split into reads, and never copies a DATA payload', () => {
    fc.assert(
      fc.property(
        fc.array(routedArb(masked), { maxLength: 12 }),
        fc.option(fc.tuple(handOverArb(masked), fc.array(routedArb(masked), { maxLength: 3 }))),
        fc.array(fc.nat(), { maxLength: 24 }),
        (frames, tail, cuts) => {
          const expected: Event[] = [];
          for (const f of frames) add(expected, { ...f.event });
          const parts = frames.map((f) => f.bytes);
          if (tail) {
            // From the hand-over on, ws reads every byte, routable frames too.
            const rest = concat([tail[0], ...tail[1].map((f) => f.bytes)]);
            add(expected, { k: 'handOver', hex: hexOf(rest) });
            parts.push(rest);
          }
          const { events, foreignPieces } = run(split(concat(parts), cuts), MAX_FRAME_BYTES, unmask);
          expect(events).toEqual(expected);
          expect(foreignPieces).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('takes one byte per read as well as whole frames', () => {
    const frames = [frame(0x2, encodeData(7, noiseBytes(300, 7))), frame(0x9, new Uint8Array([1, 2])), frame(0x2, encodeWindow(7, 5, 6))];
    const bytes = concat(frames);
    const oneByOne = run(
      Array.from(bytes, (b) => new Uint8Array([b])),
      MAX_FRAME_BYTES,
      unmask,
    );
    const whole = run([bytes], MAX_FRAME_BYTES, unmask);
    expect(oneByOne.events).toEqual(whole.events);
    expect(whole.events.map((e) => e.k)).toEqual(['data', 'ws', 'message']);
    expect(whole.events[0]).toEqual({ k: 'data', id: 7, hex: hexOf(noiseBytes(300, 7)) });
  });

  it('hands a message over the limit to ws, header and all, and everything after it', () => {
    const max = 100;
    const atLimit = frame(0x2, encodeData(3, new Uint8Array(max - HEADER_BYTES)));
    const over = frame(0x2, encodeData(3, new Uint8Array(max - HEADER_BYTES + 1)));
    const after = frame(0x2, encodeData(3, new Uint8Array([1])));
    const { events } = run([atLimit, over, after], max, unmask);
    expect(events).toEqual([
      { k: 'data', id: 3, hex: hexOf(new Uint8Array(max - HEADER_BYTES)) },
      { k: 'handOver', hex: hexOf(concat([over, after])) },
    ]);
  });

  it('hands an empty binary message to the engine (which refuses it as truncated)', () => {
    expect(run([frame(0x2, new Uint8Array(0))], MAX_FRAME_BYTES, unmask).events).toEqual([{ k: 'message', hex: '' }]);
  });
});

describe('readFramesBeside', () => {
  it("reads a wss: WebSocket's TLSSocket: DATA to the sink, pings answered by ws, the close handed over to ws", async () => {
    const payloads = [noiseBytes(65_536, 1), noiseBytes(3, 2), noiseBytes(65_536, 3), noiseBytes(40_000, 4)];
    let pongs = 0;
    const pair = await wssPair((peer) => {
      peer.on('pong', () => pongs++);
      for (const [i, p] of payloads.entries()) {
        peer.send(encodeData(5, p));
        if (i === 1) peer.ping();
      }
    });
    const { ws, wss } = pair;
    const got = new Map<number, Uint8Array[]>();
    let current: Uint8Array[] = [];
    let attached = false;
    ws.once('open', () => {
      attached = readFramesBeside(
        pair.socket(),
        {
          receive: () => expect.fail('only DATA was sent'),
          receiveDataHead: (id) => {
            expect(id).toBe(5);
            got.set(got.size, (current = []));
          },
          receiveDataPiece: (piece) => current.push(piece),
        },
        MAX_FRAME_BYTES,
      );
    });
    try {
      await once(ws, 'open');
      expect([attached, pair.socket().constructor.name]).toEqual([true, 'TLSSocket']);
      await waitFor(() => got.size === payloads.length && pongs === 1, 10_000, 'every DATA frame and the pong');
      expect([...got.values()].map((pieces) => hexOf(concat(pieces)))).toEqual(payloads.map(hexOf));
      const closed = once(ws, 'close');
      for (const peer of wss.clients) peer.close(1000, 'done');
      expect((await closed)[0]).toBe(1000);
    } finally {
      pair.close();
    }
  });
});
