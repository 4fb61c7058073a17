/**
 * Local port forwarding, the other direction of reverse tunnels: local programs reach a gateway route as if it
 * were a local socket.
 *
 * - `startForward` listens on a local TCP address or Unix socket; each accepted connection becomes a stream on one
 *   shared mux session, opened when the first connection needs it and reopened, lazily, after it is lost. OPENs
 *   are paced to the gateway's rate limit; connections beyond it wait, paused, for their turn.
 * - `connectStdio` bridges stdin/stdout to one stream (`ssh -o ProxyCommand='sockgate connect ...'`).
 *
 * Both run the shared engine over the gateway's WsTransport (server/dial.ts) and the same stream bridge as the
 * gateway and the agent (server/bridge.ts): backpressure by the Node stream contract, half-close both ways.
 */
import net from 'node:net';
import { Duplex, type Readable, type Writable } from 'node:stream';
import { SockgateError } from '../shared/errors.js';
import type { Stream } from '../shared/session.js';
import { bridgeStream } from './bridge.js';
import { dial, type Dialed } from './dial.js';
import { TokenBucket } from './limits.js';
import type { Logger } from './log.js';

export interface GatewayDialOptions {
  /** The gateway's base URL: ws://HOST:PORT or wss://HOST:PORT. */
  gateway: string;
  /** Sent as `Authorization: Bearer`. */
  token?: string;
  /** Time allowed for the WebSocket handshake, in milliseconds. */
  connectTimeoutMs: number;
}

/** Where `forward` listens: a TCP address or a Unix-socket path. */
export type ListenTarget = { readonly host: string; readonly port: number } | { readonly path: string };

export interface ForwardOptions extends GatewayDialOptions {
  route: string;
  listen: ListenTarget;
  log: Logger;
  /**
   * OPENs sent per second at most, sustained, and at once after a quiet spell. Defaults: the gateway's default
   * limits (`opensPerSecond` 100, `opensBurst` 200). Set them to the gateway's own when it is stricter: past its
   * bucket it refuses OPENs, and a session that keeps sending them is closed (1008) with every connection on it.
   */
  opensPerSecond?: number;
  opensBurst?: number;
}

/** The gateway's default OPEN rate limits (server/limits.ts), which the forwarder keeps to unless told otherwise. */
export const FORWARD_OPENS_PER_SECOND = 100;
export const FORWARD_OPENS_BURST = 200;
/** The share of the OPEN limits the forwarder uses: the rest absorbs jitter between the two buckets. */
const OPENS_MARGIN = 0.9;
/** Local connections waiting for their turn to open a stream; more are closed at once. */
export const MAX_WAITING_CONNECTIONS = 1024;

export interface ForwardHandle {
  /** The bound address: `{ host, port }` with the real port, or `{ path }`. */
  readonly address: ListenTarget;
  /** Local connections open now. */
  readonly connections: number;
  /** Mux sessions opened so far (the first, and one per reopening after a loss). */
  readonly sessionsOpened: number;
  /** Local connections accepted and waiting for their turn to open a stream (opensPerSecond). */
  readonly waiting: number;
  /** Stop listening, end open connections and the session. */
  close(): Promise<void>;
}

/** Listen and forward every accepted connection to `route`. Rejects when the address cannot be bound. */
export async function startForward(opts: ForwardOptions): Promise<ForwardHandle> {
  const { log } = opts;
  const sockets = new Set<Duplex>();
  const locals = new Set<net.Socket>();
  let sessionsOpened = 0;
  let current: Promise<Dialed> | undefined;
  /** The shared session once open, until it closes. */
  let ready: Dialed | undefined;
  let closing = false;

  /** The shared session: the open one, the one being opened, or a new one. */
  const session = (): Promise<Dialed> => {
    if (current) return current;
    const opening = dial({ gateway: opts.gateway, path: '/mux', token: opts.token, handshakeTimeoutMs: opts.connectTimeoutMs }).then(
      (dialed) => {
        sessionsOpened++;
        log.info({ url: dialed.url }, 'forward session open');
        if (!closing) ready = dialed;
        dialed.closed.then(({ code, reason }) => {
          if (ready === dialed) ready = undefined;
          if (current === opening) current = undefined; // the next connection opens a new one
          log.info({ code, reason }, 'forward session closed');
        });
        if (closing) dialed.session.close();
        return dialed;
      },
      (err: unknown) => {
        if (current === opening) current = undefined;
        throw err;
      },
    );
    current = opening;
    return opening;
  };

  // Every local connection costs an OPEN, and the gateway limits their rate per session: a burst of connections
  // (a browser, a connection pool) waits here, paused, for a token rather than spend the gateway's bucket. Tokens
  // are taken when the OPEN is sent, on an open session (not while it is being dialled, which would let them
  // pile up), and at 90% of the gateway's limits, so that network jitter between two OPENs never crosses them.
  const opens = new TokenBucket(
    OPENS_MARGIN * (opts.opensPerSecond ?? FORWARD_OPENS_PER_SECOND),
    Math.max(1, Math.floor(OPENS_MARGIN * (opts.opensBurst ?? FORWARD_OPENS_BURST))),
  );
  const waiting: net.Socket[] = [];
  /** A pump is due: a timer for the next token, or the session being dialled. One at a time. */
  let pumpScheduled = false;
  let pumpTimer: NodeJS.Timeout | undefined;
  const pump = (): void => {
    pumpScheduled = false;
    pumpTimer = undefined;
    while (waiting.length > 0 && !closing) {
      if (waiting[0]!.destroyed) {
        // No OPEN for it. (A paused socket does not notice its client leaving: that one gets its OPEN, and the
        // bridge then sees the EOF.)
        waiting.shift();
        continue;
      }
      if (!ready) {
        pumpScheduled = true;
        session().then(pump, (err: unknown) => {
          pumpScheduled = false;
          // The gateway cannot be reached: every connection waiting now is closed (later ones dial again).
          for (const socket of waiting.splice(0)) refuse(socket, err);
        });
        return;
      }
      if (!opens.take(performance.now())) {
        pumpScheduled = true;
        pumpTimer = setTimeout(pump, Math.ceil(1000 / opens.ratePerSec));
        return;
      }
      accept(ready, waiting.shift()!);
    }
  };

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    locals.add(socket);
    socket.once('close', () => locals.delete(socket));
    socket.on('error', (err) => log.debug({ err }, 'local socket error'));
    if (waiting.length >= MAX_WAITING_CONNECTIONS) {
      log.warn({ waiting: waiting.length }, 'forward: too many connections waiting to open a stream; closing the new one');
      socket.destroy();
      return;
    }
    waiting.push(socket);
    if (!pumpScheduled) pump();
  });

  function refuse(socket: net.Socket, err: unknown): void {
    const e = err instanceof SockgateError ? err : new SockgateError('SOCKGATE_ERR_INTERNAL', String(err), { cause: err });
    log.warn({ err: e.code, reason: e.message }, 'forward: cannot open a stream; closing the local connection');
    socket.destroy();
  }

  function accept(dialed: Dialed, socket: net.Socket): void {
    let stream: Stream;
    try {
      stream = dialed.session.open(opts.route);
    } catch (err) {
      refuse(socket, err);
      return;
    }
    if (socket.destroyed) {
      stream.reset(new SockgateError('SOCKGATE_ERR_STREAM_CANCELLED', 'the local connection closed'));
      return;
    }
    const fields = { route: opts.route, stream: stream.id };
    const startedAt = performance.now();
    bridgeStream(stream, {
      connect: async () => socket,
      log,
      fields,
      sockets,
      // pauseOnConnect: nothing was read before the bridge listened.
      onOpen: () => socket.resume(),
      onClose: (err) => {
        const line = { ...fields, bytesIn: stream.bytesIn, bytesOut: stream.bytesOut, ms: Math.round(performance.now() - startedAt) };
        if (err) log.info({ ...line, err: err.code, reason: err.message }, 'forwarded connection failed');
        else log.debug(line, 'forwarded connection closed');
      },
    });
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if ('path' in opts.listen) server.listen(opts.listen.path, done);
    else server.listen(opts.listen.port, opts.listen.host, done);
  });
  server.on('error', (err) => log.error({ err }, 'forward listener error'));
  const bound = server.address();
  const address: ListenTarget =
    typeof bound === 'string' || bound === null ? { path: 'path' in opts.listen ? opts.listen.path : String(bound) } : { host: bound.address, port: bound.port };

  return {
    address,
    get connections() {
      return locals.size;
    },
    get sessionsOpened() {
      return sessionsOpened;
    },
    get waiting() {
      return waiting.length;
    },
    async close() {
      closing = true;
      clearTimeout(pumpTimer);
      waiting.length = 0;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of locals) socket.destroy();
      for (const socket of sockets) socket.destroy();
      const dialed = await current?.catch(() => undefined);
      if (dialed) {
        dialed.session.close();
        setTimeout(() => dialed.ws.terminate(), 2000).unref();
        await dialed.closed;
      }
      await closed;
    },
  };
}

export interface ConnectStdioOptions extends GatewayDialOptions {
  route: string;
  stdin: Readable;
  stdout: Writable;
}

/**
 * Bridge stdin/stdout to one stream to `route`: stdin's EOF half-closes (FIN), the route's FIN ends stdout.
 * Resolves when the stream has closed: undefined when both directions ended cleanly, else the error (its code is
 * what `sockgate connect` prints). Also resolves with the error when the session cannot be opened.
 */
export async function connectStdio(opts: ConnectStdioOptions): Promise<SockgateError | undefined> {
  let dialed: Dialed;
  try {
    dialed = await dial({ gateway: opts.gateway, path: '/mux', token: opts.token, handshakeTimeoutMs: opts.connectTimeoutMs });
  } catch (err) {
    return err instanceof SockgateError ? err : new SockgateError('SOCKGATE_ERR_INTERNAL', String(err), { cause: err });
  }
  let stream: Stream;
  try {
    stream = dialed.session.open(opts.route);
  } catch (err) {
    dialed.session.close();
    return err instanceof SockgateError ? err : new SockgateError('SOCKGATE_ERR_INTERNAL', String(err), { cause: err });
  }
  // One Duplex over the two stdio streams: writes go to stdout, reads come from stdin.
  const stdio = Duplex.from({ readable: opts.stdin, writable: opts.stdout });
  const silent = { info() {}, debug() {}, error() {} };
  let finished!: (err: SockgateError | undefined) => void;
  const result = new Promise<SockgateError | undefined>((resolve) => (finished = resolve));
  // A lost session closes the stream with the session's error (SOCKGATE_ERR_SESSION_LOST, ...).
  bridgeStream(stream, { connect: async () => stdio, log: silent, onClose: (err) => finished(err) });
  const err = await result;
  if (!err) {
    // Everything the route sent has been handed to stdout: wait until it has been written.
    await new Promise<void>((resolve) => {
      if (stdio.writableFinished || stdio.destroyed) resolve();
      else {
        stdio.once('finish', () => resolve());
        stdio.once('close', () => resolve());
      }
    });
  }
  dialed.session.close();
  await Promise.race([dialed.closed, new Promise((r) => setTimeout(r, 2000).unref())]);
  return err;
}
