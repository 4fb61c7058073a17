/**
 * The reverse-tunnel agent (PROTOCOL 11): it dials `<gateway>/agent` over one WebSocket, registers the services it
 * exposes (`?services=a,b`, with its agent token in `Authorization: Bearer`), and bridges each stream the gateway
 * opens to the service's local target with the same bridge the gateway uses for its own backends
 * (server/bridge.ts): credit returned only as the local socket accepts data, half-close both ways.
 *
 * It keeps the tunnel alive: a PING every pingIntervalMs, and a PING unanswered for pingTimeoutMs drops the
 * connection (4001). A lost or refused connection is retried with exponential backoff and jitter; refusals no
 * retry can fix (400, 401, 403, 404) and being replaced by a newer agent (4005) stop it. Each change of state is
 * one log line.
 */
import type { Duplex } from 'node:stream';
import { AGENT_PATH, AGENT_SERVICES_PARAM } from '../shared/constants.js';
import { ERRORS, SockgateError, codeFromClose } from '../shared/errors.js';
import type { Stream } from '../shared/session.js';
import { backoffDelay, type AgentConfig } from './agent-config.js';
import { connectBackend } from './backend.js';
import { bridgeStream } from './bridge.js';
import { dial, isPermanentRefusal, type Dialed } from './dial.js';
import type { ReadGate } from './read-gate.js';
import type { Logger } from './log.js';
import { formatTarget } from './routes.js';

/** After a close frame to a gateway that may be gone, wait this long (ms) for its answer before dropping the TCP connection. */
const CLOSE_GRACE_MS = 2000;

export type AgentState = 'connecting' | 'connected' | 'waiting' | 'stopped';

export interface AgentHandle {
  /** Where the agent is now. */
  readonly state: AgentState;
  /** Connections that were up (registered) so far. */
  readonly connections: number;
  /**
   * Settles when the agent stops for good: undefined after stop(), or the error that stopped it (a refusal no
   * retry can fix, SOCKGATE_ERR_SESSION_REPLACED).
   */
  readonly done: Promise<SockgateError | undefined>;
  /** Resolves the next time the agent is registered (at once if it is now). Rejects if it stops first. */
  connected(): Promise<void>;
  /** Close the tunnel (1000) and stop reconnecting. */
  stop(): Promise<void>;
}

export interface AgentOptions {
  config: AgentConfig;
  log: Logger;
  /** Called at each change of state (tests, embedding). */
  onState?: (state: AgentState) => void;
  /** For tests: the random source of the jitter. */
  random?: () => number;
}

/** Start the agent. It runs until stop(), or until a refusal that no retry can fix. */
export function startAgent(options: AgentOptions): AgentHandle {
  const { config, log } = options;
  const services = [...config.services.keys()];
  let state: AgentState = 'connecting';
  let stopped = false;
  let connections = 0;
  let current: Dialed | undefined;
  let wake: (() => void) | undefined;
  let waiters: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  let finish!: (err: SockgateError | undefined) => void;
  const done = new Promise<SockgateError | undefined>((resolve) => (finish = resolve));

  const setState = (next: AgentState): void => {
    state = next;
    options.onState?.(next);
    if (next === 'connected') {
      for (const w of waiters) w.resolve();
      waiters = [];
    }
  };

  const stopWith = (err: SockgateError | undefined): void => {
    stopped = true;
    setState('stopped');
    for (const w of waiters) w.reject(err ?? new SockgateError('SOCKGATE_ERR_SDK_NOT_CONNECTED', 'the agent stopped'));
    waiters = [];
    finish(err);
  };

  /** Wait `ms`, or less if stop() is called. */
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => {
        wake = undefined;
        resolve();
      }, ms);
      wake = () => {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      };
    });

  async function run(): Promise<void> {
    let attempt = 0;
    for (;;) {
      if (stopped) return;
      setState('connecting');
      log.info({ gateway: config.gateway, services, attempt: attempt + 1 }, 'agent connecting');
      let dialed: Dialed;
      /** The local sockets of this connection's streams. */
      const sockets = new Set<Duplex>();
      try {
        dialed = await connectOnce(sockets);
      } catch (err) {
        const e = err instanceof SockgateError ? err : new SockgateError('SOCKGATE_ERR_INTERNAL', String(err), { cause: err });
        if (stopped) return;
        if (isPermanentRefusal(e)) {
          log.error({ err: e.code, reason: e.message }, 'agent registration refused; not retrying');
          return stopWith(e);
        }
        const delay = backoffDelay(config.reconnect, attempt++, options.random);
        setState('waiting');
        log.warn({ err: e.code, reason: e.message, retryInMs: delay }, 'agent connect failed; retrying');
        await sleep(delay);
        continue;
      }
      if (stopped) {
        dialed.session.close();
        return;
      }
      current = dialed;
      connections++;
      setState('connected');
      log.info({ url: dialed.url, services }, 'agent connected');
      const outcome = await serve(dialed, sockets, () => {
        attempt = 0; // the link works: the next loss starts the backoff over
      });
      current = undefined;
      if (stopped) return;
      if (outcome.code === ERRORS.SOCKGATE_ERR_SESSION_REPLACED.closeCode) {
        const err = new SockgateError('SOCKGATE_ERR_SESSION_REPLACED', outcome.reason);
        log.error({ err: err.code, reason: outcome.reason }, 'agent replaced by a newer agent; not reconnecting');
        return stopWith(err);
      }
      const delay = backoffDelay(config.reconnect, attempt++, options.random);
      setState('waiting');
      log.warn({ code: outcome.code, err: codeFromClose(outcome.code), reason: outcome.reason, retryInMs: delay }, 'agent disconnected; reconnecting');
      await sleep(delay);
    }
  }

  function connectOnce(sockets: Set<Duplex>): Promise<Dialed> {
    return dial({
      gateway: config.gateway,
      path: AGENT_PATH,
      query: { [AGENT_SERVICES_PARAM]: services.join(',') },
      token: config.token,
      handshakeTimeoutMs: config.connectTimeoutMs,
      onStream: (stream, service, readGate) => serveStream(stream, service, sockets, readGate),
      session: {
        maxIncomingStreams: config.maxStreams,
        onGoAway: (err) => log.info({ err: err.code, reason: err.message }, 'the gateway is going away: no new streams on this connection'),
      },
    });
  }

  /** Serve streams on one connection until it closes; `healthy` is called once the first PING is answered. */
  async function serve(dialed: Dialed, sockets: Set<Duplex>, healthy: () => void): Promise<{ code: number; reason: string }> {
    const { session, ws } = dialed;
    let answered = false;
    const ping = (): void => {
      if (session.closed) return;
      let timer: ReturnType<typeof setTimeout> | undefined = setTimeout(() => {
        timer = undefined;
        log.warn({ pingTimeoutMs: config.pingTimeoutMs }, 'gateway did not answer a PING; dropping the connection');
        session.close(new SockgateError('SOCKGATE_ERR_SESSION_PING_TIMEOUT', `no PONG within ${config.pingTimeoutMs} ms`));
        // The link is presumed dead: do not wait for a closing handshake that will not come.
        ws.terminate();
      }, config.pingTimeoutMs);
      session.ping().then(
        () => {
          if (timer) clearTimeout(timer);
          if (!answered) {
            answered = true;
            healthy();
          }
        },
        () => {
          if (timer) clearTimeout(timer);
        },
      );
    };
    ping();
    const interval = setInterval(ping, config.pingIntervalMs);
    const outcome = await dialed.closed;
    clearInterval(interval);
    // The session closed its streams, and so the bridge its sockets; this takes any still flushing.
    for (const socket of sockets) socket.destroy();
    return outcome;
  }

  function serveStream(stream: Stream, service: string, sockets: Set<Duplex>, readGate: ReadGate): void {
    const target = config.services.get(service);
    const fields = { service, stream: stream.id };
    if (!target) {
      log.info(fields, 'stream refused: the agent does not expose this service');
      stream.reject(new SockgateError('SOCKGATE_ERR_ROUTE_UNKNOWN', `this agent does not expose ${JSON.stringify(service)}`));
      return;
    }
    const startedAt = performance.now();
    bridgeStream(stream, {
      connect: (onread) => connectBackend(target, { timeoutMs: config.openTimeoutMs, onread }),
      log,
      fields,
      sockets,
      readGate,
      onOpen: () => log.debug({ ...fields, target: formatTarget(target) }, 'stream open'),
      onClose: (err) =>
        log.debug(
          { ...fields, bytesIn: stream.bytesIn, bytesOut: stream.bytesOut, ms: Math.round(performance.now() - startedAt), err: err?.code, reason: err?.message },
          'stream closed',
        ),
    });
  }

  run().catch((err: unknown) => {
    log.error({ err }, 'agent failed');
    stopWith(new SockgateError('SOCKGATE_ERR_INTERNAL', String(err), { cause: err }));
  });

  return {
    get state() {
      return state;
    },
    get connections() {
      return connections;
    },
    done,
    connected() {
      if (state === 'connected') return Promise.resolve();
      if (stopped) return Promise.reject(new SockgateError('SOCKGATE_ERR_SDK_NOT_CONNECTED', 'the agent stopped'));
      return new Promise<void>((resolve, reject) => waiters.push({ resolve, reject }));
    },
    async stop() {
      if (stopped) return;
      stopWith(undefined);
      wake?.();
      const dialed = current;
      if (dialed) {
        dialed.session.close();
        setTimeout(() => dialed.ws.terminate(), CLOSE_GRACE_MS).unref();
        await dialed.closed;
      }
      log.info({}, 'agent stopped');
    },
  };
}
