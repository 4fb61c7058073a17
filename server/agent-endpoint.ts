/**
 * The gateway's side of reverse tunnels (PROTOCOL 11): `GET /agent`, where agents dial in and register the
 * services they serve, and `connectAgent()`, which opens a stream to a service on its agent's session as a Node
 * Duplex, so that raw mode and the mux bridge reach an agent's service as they reach any backend socket.
 *
 * An agent session is the shared engine in the server role (even stream ids) with no onStream: the gateway opens
 * every stream, and an OPEN from an agent is refused (SOCKGATE_ERR_ROUTE_UNKNOWN). Which agent serves which service
 * is the AgentRegistry's business (server/agent-registry.ts: the newest registration wins).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { AGENT_PATH, SUBPROTOCOL } from '../shared/constants.js';
import { SockgateError } from '../shared/errors.js';
import { Session } from '../shared/session.js';
import { admitUpgrade, type AdmittedAgent, type Admission } from './admission.js';
import type { AgentLink, AgentRegistry } from './agent-registry.js';
import type { GatewayLimits } from './config.js';
import { startKeepalive, terminateAfter } from './keepalive.js';
import { WsTransport, limitFrameSize, type WsSocket } from './mux.js';
import { StreamSocket } from './stream-socket.js';
import { offeredSubprotocols, releaseUpgradeRequest, sendError } from './ws-util.js';

export interface AgentEndpointOptions {
  registry: AgentRegistry;
  /** The admission in force (a config reload replaces it). */
  admission(): Admission;
  /** The limits in force for new sessions. */
  limits(): GatewayLimits;
  /** Refuse every agent now (503 with this error), e.g. while the gateway drains. Optional. */
  refuse?(): SockgateError | undefined;
  /** Told of every refused agent upgrade (metrics). Optional. */
  onRefused?(err: SockgateError): void;
  /** An agent session started (metrics); the function returned is called when its connection closes. Optional. */
  onSession?(): () => void;
  /** An agent did not answer a keepalive PING in time (metrics). Optional. */
  onKeepaliveTimeout?(): void;
}

/**
 * Register `GET /agent` (AGENT_PATH) in `app`, which must have @fastify/websocket registered with a
 * handleProtocols that selects `sockgate.v1` for this path. Refusals are HTTP answers before the upgrade.
 */
export function registerAgentEndpoint(app: FastifyInstance, opts: AgentEndpointOptions): void {
  const admitted = new WeakMap<IncomingMessage, AdmittedAgent>();
  app.get(
    AGENT_PATH,
    {
      websocket: true,
      preValidation: async (req, reply) => {
        // A plain GET (no upgrade) is answered 404 by @fastify/websocket.
        if (!req.ws) return undefined;
        if (!offeredSubprotocols(req.raw).has(SUBPROTOCOL)) {
          return sendError(reply, 400, new SockgateError('SOCKGATE_ERR_PROTOCOL', `offer the WebSocket subprotocol ${SUBPROTOCOL} (PROTOCOL 1.2)`));
        }
        return admitUpgrade(req, reply, {
          refusal: opts.refuse?.(),
          admit: () => opts.admission().admitAgent(req.raw, req.ip),
          admitted,
          onRefused: (err) => opts.onRefused?.(err),
          logMessage: 'agent refused',
        });
      },
    },
    (socket, req) => {
      releaseUpgradeRequest(socket, req);
      const entry = admitted.get(req.raw);
      if (!entry) return socket.terminate(); // not admitted: cannot happen past the hook
      runAgentSession(socket, entry, {
        registry: opts.registry,
        admission: opts.admission,
        limits: opts.limits(),
        log: req.log,
        remoteAddress: req.ip,
        socket: req.raw.socket,
        onSession: opts.onSession,
        onKeepaliveTimeout: opts.onKeepaliveTimeout,
      });
    },
  );
}

/**
 * A replaced or unresponsive agent is closed with a close frame, and terminated if it has not answered it within
 * this long (ms): such a peer is often gone, and ws would otherwise wait 30 s holding its slot.
 */
export const AGENT_CLOSE_GRACE_MS = 2000;

let agentSeq = 0;

interface AgentSessionContext {
  registry: AgentRegistry;
  /** The admission in force: after a config reload, the agent's token is checked again at its next stream. */
  admission(): Admission;
  limits: GatewayLimits;
  log: FastifyBaseLogger;
  remoteAddress: string;
  /** The TCP socket under the WebSocket: the transport writes a turn's frames in one write. */
  socket?: WsSocket;
  onSession?(): () => void;
  onKeepaliveTimeout?(): void;
}

/** Run one agent's session: register it, keep it alive, unregister it when it ends. Never throws. */
function runAgentSession(ws: WebSocket, entry: AdmittedAgent, ctx: AgentSessionContext): void {
  const id = `agent-${++agentSeq}`;
  const { limits, registry } = ctx;
  const log = ctx.log.child({ agent: id, principal: entry.agent.name, remote: ctx.remoteAddress, services: entry.services });
  const startedAt = performance.now();
  limitFrameSize(ws, log);
  let session: Session;
  let transport: WsTransport;
  try {
    transport = new WsTransport(ws, limits.maxTransportBufferedBytes, (err) => log.error({ err }, 'agent session internal error'), ctx.socket);
    session = new Session({
      role: 'server',
      transport,
      maxWindowBytes: limits.maxWindowBytes,
      maxSessionWindowBytes: limits.maxSessionWindowBytes,
      maxTransportBufferedBytes: limits.maxTransportBufferedBytes,
      // No onStream: an agent opens nothing; the engine refuses its OPENs with SOCKGATE_ERR_ROUTE_UNKNOWN.
      onClose: () => {
        keepalive?.stop();
        registry.unregister(link).catch((err: unknown) => log.error({ err }, 'agent unregister failed'));
      },
    });
    transport.bind(session);
  } catch (err) {
    log.error({ err }, 'agent session failed to start');
    ws.terminate();
    return;
  }
  const sessionClosed = ctx.onSession?.();
  let streams = 0;
  /** The admission the token was last checked under. */
  let checkedBy = ctx.admission();
  const link: AgentLink = {
    id,
    name: entry.agent.name,
    services: entry.services,
    open(service) {
      const admission = ctx.admission();
      if (admission !== checkedBy) {
        // A reload replaced the auth: an agent whose entry was removed or narrowed serves nothing more.
        const revoked = admission.checkAgent(entry.credential, entry.services);
        if (revoked) {
          log.info({ err: revoked.code, reason: revoked.message }, 'agent credential no longer accepted since a configuration reload');
          session.close(new SockgateError('SOCKGATE_ERR_SESSION_POLICY', 'agent credential no longer accepted'));
          throw new SockgateError('SOCKGATE_ERR_ROUTE_UNAVAILABLE', `the agent for ${JSON.stringify(service)} was disconnected: its credential was revoked`);
        }
        checkedBy = admission;
      }
      const stream = session.open(service);
      streams++;
      return stream;
    },
    replace(service, by) {
      log.info({ service, by: by.id }, 'agent replaced by a newer registration');
      session.close(new SockgateError('SOCKGATE_ERR_SESSION_REPLACED', `service ${JSON.stringify(service)} registered by ${by.name} (${by.id})`));
      terminateAfter(ws, AGENT_CLOSE_GRACE_MS);
    },
  };
  const keepalive = startKeepalive(ws, {
    intervalMs: limits.keepaliveIntervalMs,
    timeoutMs: limits.keepaliveTimeoutMs,
    appPing: () => session.ping().catch(() => {}),
    // The agent's frames are read beside ws (WsTransport.bind): its transport hears them, not ws's 'message'.
    messages: (heard) => (transport.onMessage = heard),
    onTimeout: () => {
      ctx.onKeepaliveTimeout?.();
      log.info({}, 'agent did not answer a PING in time');
      session.close(new SockgateError('SOCKGATE_ERR_SESSION_PING_TIMEOUT'));
      terminateAfter(ws, AGENT_CLOSE_GRACE_MS);
    },
  });
  ws.on('error', (err: Error) => log.debug({ err }, 'agent websocket error'));
  ws.on('close', (code: number, reason: Buffer) => {
    sessionClosed?.();
    log.info({ code, reason: reason.toString(), streams, ms: Math.round(performance.now() - startedAt) }, 'agent disconnected');
  });
  // A round-trip time for window auto-tuning (PROTOCOL 5.5), as on client sessions.
  session.ping().catch(() => {});
  registry.register(link).then(
    () => {
      // The session may have ended while a remote registry was being updated: take the registration back.
      if (session.closed) registry.unregister(link).catch(() => {});
      else log.info('agent registered');
    },
    (err: unknown) => {
      log.error({ err }, 'agent registration failed');
      session.close(new SockgateError('SOCKGATE_ERR_INTERNAL', 'registration failed'));
    },
  );
}

/**
 * A stream to `service` on the agent serving it, as a Duplex, once the agent accepted it (OPEN_OK). Rejects with
 * SOCKGATE_ERR_ROUTE_UNAVAILABLE when no agent serves it, with the agent's OPEN_FAIL error (e.g.
 * SOCKGATE_ERR_BACKEND_REFUSED from its local connect), or with SOCKGATE_ERR_BACKEND_TIMEOUT when the agent does
 * not answer within `timeoutMs` (the stream is then reset).
 */
export async function connectAgent(registry: AgentRegistry, service: string, timeoutMs: number): Promise<Duplex> {
  const socket = new StreamSocket(await registry.openStream(service));
  // Until the caller listens: a stream that fails before it opens rejects `opened` with the same error.
  const swallow = (): void => {};
  socket.on('error', swallow);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new SockgateError('SOCKGATE_ERR_BACKEND_TIMEOUT', `ETIMEDOUT: the agent did not accept the stream within ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    await Promise.race([socket.opened, timeout]);
  } catch (err) {
    socket.destroy(); // resets the agent's stream (SOCKGATE_ERR_STREAM_CANCELLED) if it is still open
    throw err;
  } finally {
    clearTimeout(timer);
  }
  socket.off('error', swallow);
  return socket;
}

