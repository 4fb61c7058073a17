/**
 * In-memory transports for testing shared/session.ts without any network; integration tests use real sockets.
 *
 * - `sessionPair()` joins two engine sessions. Each message is copied and delivered later, never from inside the
 *   sender's `send()` (a WebSocket never re-enters its sender), in order, with a close delivered after the
 *   messages sent before it. Deliveries run from one queue drained on a microtask, so `settle()` is cheap.
 * - `rawSession()` runs one session against a recording transport: a test feeds it hand-made frames and reads
 *   back what it sent, to check exact wire behaviour and the peer's misbehaviour.
 */
import { decodeFrame } from '../../shared/decode.js';
import type { Frame } from '../../shared/frame.js';
import { Session, type SessionOptions, type Transport } from '../../shared/session.js';

type Side = Omit<SessionOptions, 'role' | 'transport'>;
type Role = 'client' | 'server';

/** Bound on deliveries per drain: a runaway exchange (two peers answering each other forever) fails the test. */
const MAX_DELIVERIES_PER_DRAIN = 200_000;

export interface Pair {
  client: Session;
  server: Session;
  /** Messages each side sent, for assertions. */
  sent: { client: Uint8Array[]; server: Uint8Array[] };
  /** The frames a side sent, decoded. */
  frames(side: Role): Frame[];
  /** The close each side's transport was asked for, once it was. */
  closedWith: { client?: { code: number; reason: string }; server?: { code: number; reason: string } };
  /** Deliver everything queued, let promise callbacks run, repeat until quiet (bounded). */
  settle(): Promise<void>;
  /** Deliver everything queued now, synchronously (no promise callbacks run in between). */
  deliver(): void;
  /** Pretend the client's WebSocket holds this many bytes (to test transport backpressure). */
  setClientBuffered(n: number): void;
  /** Pretend the server's WebSocket holds this many bytes. */
  setServerBuffered(n: number): void;
}

type Delivery = { to: Role; message: Uint8Array } | { to: Role; close: { code: number; reason: string } };

export function sessionPair(clientOpts: Side = {}, serverOpts: Side = {}): Pair {
  const sent = { client: [] as Uint8Array[], server: [] as Uint8Array[] };
  const closedWith: Pair['closedWith'] = {};
  const buffered = { client: 0, server: 0 };
  const queue: Delivery[] = [];
  let scheduled = false;
  let runaway: Error | undefined;
  const sessions = {} as Record<Role, Session>;
  const sessionOf = (role: Role): Session => sessions[role];

  const deliver = (): void => {
    scheduled = false;
    let n = 0;
    while (queue.length > 0) {
      if (++n > MAX_DELIVERIES_PER_DRAIN) {
        runaway = new Error(`more than ${MAX_DELIVERIES_PER_DRAIN} deliveries without going quiet`);
        queue.length = 0;
        return;
      }
      const d = queue.shift()!;
      if ('message' in d) sessionOf(d.to).receive(d.message);
      else sessionOf(d.to).transportClosed(d.close.code, d.close.reason);
    }
  };
  const schedule = (): void => {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(deliver);
  };

  const transport = (from: Role): Transport => {
    const to: Role = from === 'client' ? 'server' : 'client';
    return {
      send(message) {
        // Like a WebSocket: nothing goes out once this side asked to close.
        if (closedWith[from]) return;
        sent[from].push(message);
        queue.push({ to, message: message.slice() });
        schedule();
      },
      get bufferedAmount() {
        return buffered[from];
      },
      close(code, reason) {
        if (closedWith[from]) return;
        closedWith[from] = { code, reason };
        queue.push({ to, close: { code, reason } });
        schedule();
      },
    };
  };
  const client = (sessions.client = new Session({ ...clientOpts, role: 'client', transport: transport('client') }));
  const server = (sessions.server = new Session({ ...serverOpts, role: 'server', transport: transport('server') }));
  return {
    client,
    server,
    sent,
    closedWith,
    frames: (side) => sent[side].map((m) => decodeFrame(m)),
    deliver() {
      deliver();
      if (runaway) throw runaway;
    },
    async settle() {
      for (let i = 0; i < 1000; i++) {
        deliver();
        if (runaway) throw runaway;
        // One macrotask turn lets promise callbacks (which may write more) run before we look again.
        await new Promise<void>((r) => setImmediate(r));
        if (queue.length === 0) return;
      }
      throw new Error('settle(): still delivering after 1000 turns');
    },
    setClientBuffered(n) {
      buffered.client = n;
    },
    setServerBuffered(n) {
      buffered.server = n;
    },
  };
}

export interface RawSession {
  session: Session;
  /** Every message the session sent, in order. */
  readonly out: Uint8Array[];
  /** For each message in `out`: whether the session said it may be deferred (Transport.send). */
  readonly deferrable: boolean[];
  /** The frames it sent, decoded (throws if the session ever sent an invalid frame). */
  frames(): Frame[];
  /** Frames sent since the last call to take(). */
  take(): Frame[];
  /** The close the session asked its transport for, if any. */
  closedWith: { code: number; reason: string } | undefined;
  /** The error onClose reported: 'open' while it has not fired. */
  closeError: 'open' | Error | undefined;
  /** Feed one message to the session. */
  feed(message: Uint8Array): void;
  /** Pretend the transport holds this many bytes. */
  setBuffered(n: number): void;
}

/** One session (default role 'server') whose transport records what it sends and is fed by the test. */
export function rawSession(opts: Side & { role?: Role } = {}): RawSession {
  let buffered = 0;
  let taken = 0;
  const out: Uint8Array[] = [];
  const deferrable: boolean[] = [];
  const raw: RawSession = {
    session: undefined as unknown as Session,
    out,
    deferrable,
    frames: () => out.map((m) => decodeFrame(m)),
    take() {
      const fresh = out.slice(taken).map((m) => decodeFrame(m));
      taken = out.length;
      return fresh;
    },
    closedWith: undefined,
    closeError: 'open',
    feed: (message) => raw.session.receive(message),
    setBuffered(n) {
      buffered = n;
    },
  };
  const { role = 'server', onClose, ...rest } = opts;
  raw.session = new Session({
    ...rest,
    role,
    onClose(err) {
      raw.closeError = err;
      onClose?.(err);
    },
    transport: {
      send(message, mayWait) {
        out.push(message.slice());
        deferrable.push(mayWait === true);
      },
      get bufferedAmount() {
        return buffered;
      },
      close(code, reason) {
        raw.closedWith ??= { code, reason };
      },
    },
  });
  return raw;
}
