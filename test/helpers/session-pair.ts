/**
 * Two engine sessions joined by an in-memory transport that delivers each message on a later microtask, as a
 * WebSocket would. Used to test shared/session.ts without any network; integration tests use real sockets.
 */
import { Session, type SessionOptions, type Transport } from '../../shared/session.js';

export interface Pair {
  client: Session;
  server: Session;
  /** Messages each side sent, for assertions. */
  sent: { client: Uint8Array[]; server: Uint8Array[] };
  /** Let queued deliveries run. */
  settle(): Promise<void>;
  /** Pretend the client's WebSocket holds this many bytes (to test transport backpressure). */
  setClientBuffered(n: number): void;
}

type Side = Omit<SessionOptions, 'role' | 'transport'>;

export function sessionPair(clientOpts: Side = {}, serverOpts: Side = {}): Pair {
  const sent = { client: [] as Uint8Array[], server: [] as Uint8Array[] };
  let clientBuffered = 0;
  let client!: Session;
  let server!: Session;
  const transport = (from: 'client' | 'server'): Transport => ({
    send(message) {
      sent[from].push(message);
      const copy = message.slice();
      queueMicrotask(() => (from === 'client' ? server : client).receive(copy));
    },
    get bufferedAmount() {
      return from === 'client' ? clientBuffered : 0;
    },
    close(code, reason) {
      queueMicrotask(() => (from === 'client' ? server : client).transportClosed(code, reason));
    },
  });
  client = new Session({ ...clientOpts, role: 'client', transport: transport('client') });
  server = new Session({ ...serverOpts, role: 'server', transport: transport('server') });
  return {
    client,
    server,
    sent,
    async settle() {
      for (let i = 0; i < 50; i++) await new Promise<void>((r) => setTimeout(r, 0));
    },
    setClientBuffered(n) {
      clientBuffered = n;
    },
  };
}
