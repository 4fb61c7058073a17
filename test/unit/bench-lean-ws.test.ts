/**
 * bench/lean-ws.mjs's frame reader: the lean download client hands payload bytes to the pattern check as they
 * arrive, so the reader must find every frame boundary however the socket cuts the bytes, and refuse what a
 * WebSocket client must not accept. (Its handshake and socket: test/integration/bench-lean-ws.test.ts.)
 */
import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { Delivery, FrameReader, maskedFrame } from '../../bench/lean-ws.mjs';

/** A server frame (unmasked): opcode, FIN, payload, with the shortest length encoding unless `ext` forces one. */
function frame(opcode: number, payload: Uint8Array, { fin = true, rsv = 0, masked = false } = {}): Buffer {
  const len = payload.length;
  const head = len < 126 ? [len] : len < 65536 ? [126, len >> 8, len & 0xff] : [127, 0, 0, 0, 0, (len >>> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff];
  head[0]! |= masked ? 0x80 : 0;
  const mask = masked ? [0, 0, 0, 0] : [];
  return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | rsv | opcode, ...head, ...mask]), payload]);
}

const bytes = (n: number, seed: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

/** Feeds `wire` to a reader in pieces cut by `cuts` (sizes, cycled); returns the data and control frames seen. */
function read(wire: Uint8Array, cuts: number[]): { data: Buffer; controls: [number, string][] } {
  const data: Buffer[] = [];
  const controls: [number, string][] = [];
  const reader = new FrameReader(
    (view) => data.push(Buffer.from(view)),
    (op, payload) => controls.push([op, payload.toString('hex')]),
  );
  for (let at = 0, k = 0; at < wire.length; k++) {
    const n = cuts[k % cuts.length]!;
    reader.push(wire.subarray(at, at + n));
    at += n;
  }
  return { data: Buffer.concat(data), controls };
}

describe('FrameReader', () => {
  // Every length encoding (7-bit, 16-bit, 64-bit), an empty frame, a fragmented message with a ping inside it,
  // and a close at the end.
  const a = bytes(100, 1);
  const b = bytes(300, 2);
  const c = bytes(70_000, 3);
  const d1 = bytes(10, 4);
  const d2 = bytes(2000, 5);
  const wire = Buffer.concat([
    frame(2, a),
    frame(2, Buffer.alloc(0)),
    frame(2, b),
    frame(2, c),
    frame(2, d1, { fin: false }),
    frame(9, Buffer.from('abcd')),
    frame(0, d2),
    frame(10, Buffer.alloc(0)),
    frame(8, Buffer.from([0x03, 0xe8])),
  ]);
  const expected = Buffer.concat([a, b, c, d1, d2]);
  const controls = [
    [9, Buffer.from('abcd').toString('hex')],
    [10, ''],
    [8, '03e8'],
  ];

  for (const cuts of [[wire.length], [1], [2, 3, 5, 7], [13, 1, 65_536], [125, 126, 127]]) {
    it(`finds every frame when the bytes arrive in pieces of ${cuts.join(', ')}`, () => {
      const got = read(wire, cuts);
      expect(got.data.equals(expected)).toBe(true);
      expect(got.controls).toEqual(controls);
    });
  }

  it.each([
    ['a masked frame', frame(2, a, { masked: true }), /masked/],
    ['a reserved bit', frame(2, a, { rsv: 0x40 }), /reserved bit/],
    ['a text frame', frame(1, Buffer.from('hi')), /opcode 1/],
    ['an unknown opcode', frame(3, a), /opcode 3/],
    ['a control frame over 125 bytes', frame(9, bytes(126, 0)), /control frame of 126/],
    ['a fragmented control frame', frame(9, a.subarray(0, 4), { fin: false }), /fragmented/],
    ['a continuation outside a message', frame(0, a), /continuation/],
    ['a new message inside one', Buffer.concat([frame(2, a, { fin: false }), frame(2, a)]), /new message/],
  ])('refuses %s', (_, bad, message) => {
    expect(() => read(bad, [bad.length])).toThrow(message);
    expect(() => read(bad, [1])).toThrow(message);
  });

  it('takes no bytes past a frame as its payload', () => {
    // Two frames in one piece, the second starting one byte after the first ends: nothing leaks between them.
    const got = read(Buffer.concat([frame(2, Buffer.from([1, 2, 3])), frame(2, Buffer.from([4]))]), [1000]);
    expect([...got.data]).toEqual([1, 2, 3, 4]);
  });
});

describe('maskedFrame', () => {
  it.each([0, 1, 125, 126, 65_535, 65_536, 70_000])('masks %i bytes with the length encoding RFC 6455 gives them', (n) => {
    const payload = bytes(n, 9);
    const f = maskedFrame(2, payload);
    expect(f[0]).toBe(0x82);
    expect(f[1]! & 0x80).toBe(0x80);
    const len7 = f[1]! & 0x7f;
    const ext = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
    const len = ext === 0 ? len7 : ext === 2 ? f.readUInt16BE(2) : Number(f.readBigUInt64BE(2));
    expect(len).toBe(n);
    expect(len7).toBe(n < 126 ? n : n < 65_536 ? 126 : 127);
    const key = f.subarray(2 + ext, 6 + ext);
    const body = f.subarray(6 + ext);
    expect(body.length).toBe(n);
    expect(Buffer.from(body.map((x, i) => x ^ key[i & 3]!)).equals(payload)).toBe(true);
  });
});

describe('Delivery', () => {
  it('keeps copies of what arrives before onData is set, and hands them over first, in order', () => {
    const d = new Delivery();
    const reused = Buffer.from([1, 2, 3]);
    d.push(reused);
    reused.fill(9); // the next read overwrites the buffer
    d.push(Buffer.from([4]));
    const got: number[] = [];
    d.set((v) => got.push(...v));
    d.push(Buffer.from([5, 6]));
    expect(got).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('refuses to hold more than 16 MiB for nobody', () => {
    const d = new Delivery();
    d.push(Buffer.alloc(16 * 1024 * 1024));
    expect(() => d.push(Buffer.alloc(1))).toThrow(/before anyone read them/);
  });
});
