/**
 * server/read-gate.ts: which paused backend sockets may read, and when. The gate's inputs are the transport's
 * buffered bytes and the engine's queue, given here as plain values; the event loop is Node's own.
 */
import { nextTick } from 'node:process';
import { describe, expect, it } from 'vitest';
import { ReadGate } from '../../server/read-gate.js';

const KiB = 1024;
const READ = 256 * KiB;
const ROOM = 1024 * KiB;

const immediate = (): Promise<void> => new Promise((r) => setImmediate(r));
const tick = (): Promise<void> => new Promise((r) => nextTick(r));

function setup(): { gate: ReadGate; transport: { bufferedAmount: number }; engine: { queued: boolean }; resumed: string[]; socket(name: string, gone?: boolean): () => boolean } {
  const transport = { bufferedAmount: 0 };
  const engine = { queued: false };
  const gate = new ReadGate(transport, () => engine.queued, ROOM, READ);
  const resumed: string[] = [];
  return {
    gate,
    transport,
    engine,
    resumed,
    socket: (name, gone = false) => () => {
      if (gone) return false;
      resumed.push(name);
      return true;
    },
  };
}

describe('ReadGate', () => {
  it('resumes waiting sockets in turn, as many reads as the room holds, and more as the transport drains', async () => {
    const { gate, transport, resumed, socket } = setup();
    transport.bufferedAmount = 300 * KiB;
    for (const name of ['a', 'b', 'c', 'd', 'e']) gate.wait(socket(name));
    await tick();
    // Granted while what the transport holds plus the reads granted is under 1 MiB: 300 + 2 x 256 KiB, then no more.
    expect(resumed).toEqual(['a', 'b', 'c']);
    expect(gate.waiting).toBe(2);
    gate.pump();
    expect(resumed).toEqual(['a', 'b', 'c']);
    // Once the grants have expired (two check phases: their reads would have come in the poll phase between), the
    // room is the transport's alone again.
    await immediate();
    await immediate();
    expect(resumed).toEqual(['a', 'b', 'c', 'd', 'e']);
  });

  it('never resumes a socket during the call that queued it (an onread callback returning false would undo it)', async () => {
    const { gate, resumed, socket } = setup();
    gate.wait(socket('a'));
    expect(resumed).toEqual([]);
    await tick();
    expect(resumed).toEqual(['a']);
  });

  it('grants nothing while the engine has DATA queued for the transport, or the transport is full', async () => {
    const { gate, transport, engine, resumed, socket } = setup();
    engine.queued = true;
    gate.wait(socket('a'));
    await tick();
    expect(resumed).toEqual([]);
    engine.queued = false;
    transport.bufferedAmount = ROOM;
    gate.pump();
    expect(resumed).toEqual([]);
    transport.bufferedAmount = ROOM - 1;
    gate.pump();
    expect(resumed).toEqual(['a']);
  });

  it('skips sockets that are gone without spending room on them', async () => {
    const { gate, transport, resumed, socket } = setup();
    transport.bufferedAmount = ROOM - READ; // room for one read
    gate.wait(socket('closed', true));
    gate.wait(socket('closed too', true));
    gate.wait(socket('a'));
    gate.wait(socket('b'));
    await tick();
    expect(resumed).toEqual(['a']);
    expect(gate.waiting).toBe(1);
  });

  it('forgets a socket taken out of the queue (its stream closed): no entry left, no room spent on it', async () => {
    const { gate, transport, resumed, socket } = setup();
    transport.bufferedAmount = ROOM - READ; // room for one read
    const closed = socket('closed');
    gate.wait(closed);
    gate.wait(socket('a'));
    gate.forget(closed);
    gate.forget(closed); // twice is harmless
    expect(gate.waiting).toBe(1);
    await tick();
    expect(resumed).toEqual(['a']);
  });

  it('a quiet socket holds its grant for two check phases at most', async () => {
    const { gate, transport, resumed, socket } = setup();
    transport.bufferedAmount = ROOM - READ;
    gate.wait(socket('quiet'));
    gate.wait(socket('next'));
    await tick();
    expect(resumed).toEqual(['quiet']);
    // Its backend sends nothing, so its read never comes: the room it was granted comes back all the same.
    await immediate();
    expect(resumed).toEqual(['quiet']);
    await immediate();
    expect(resumed).toEqual(['quiet', 'next']);
  });

  it('is contended while two or more sockets are in bulk transfers, and never counts below none', () => {
    const { gate } = setup();
    expect(gate.contended).toBe(false);
    gate.bulkStarted();
    expect(gate.contended).toBe(false);
    gate.bulkStarted();
    expect(gate.contended).toBe(true);
    gate.bulkEnded();
    expect(gate.contended).toBe(false);
    gate.bulkEnded();
    gate.bulkEnded();
    gate.bulkStarted();
    expect(gate.contended).toBe(false);
    gate.bulkStarted();
    expect(gate.contended).toBe(true);
  });

  it('lets a socket read on only while no one waits and the room holds another read', async () => {
    const { gate, transport, resumed, socket } = setup();
    expect(gate.mayReadOn()).toBe(true);
    transport.bufferedAmount = ROOM;
    expect(gate.mayReadOn()).toBe(false);
    transport.bufferedAmount = 0;
    // Granted reads count against the room until they expire.
    transport.bufferedAmount = ROOM - 2 * READ;
    gate.wait(socket('a'));
    await tick();
    expect(resumed).toEqual(['a']);
    expect(gate.mayReadOn()).toBe(true);
    transport.bufferedAmount = ROOM - READ;
    expect(gate.mayReadOn()).toBe(false);
    transport.bufferedAmount = 0;
    // Someone waiting (the engine's queue keeps it from its turn): the others queue behind it.
    const { gate: g2, engine: e2, socket: s2 } = setup();
    e2.queued = true;
    g2.wait(s2('waiting'));
    e2.queued = false;
    expect(g2.mayReadOn()).toBe(false);
  });
});
