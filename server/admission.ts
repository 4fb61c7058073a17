/**
 * The checks an upgrade request passes before it becomes a WebSocket (run from the routes' preValidation hooks),
 * in this order: Host and Origin (server/origin.ts), the credential (server/auth.ts), the raw route's permission,
 * then a session slot (server/limits.ts). The cheap checks that need no secret come first; a slot is taken last,
 * so a refused request never holds one. Every refusal is an HTTP status with a registry code
 * (PROTOCOL 7.3); no refusal, and no log line, ever contains the credential.
 * docs/SECURITY.md describes the rules.
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { SockgateError } from '../shared/errors.js';
import { parseAgentServices } from './agent-registry.js';
import { bearerChallenge, createAgentAuthenticator, createAuthenticator, extractCredential, type AgentPrincipal, type Principal } from './auth.js';
import { isLoopbackHost, type GatewayConfig } from './config.js';
import { ConnectionCounter, type Release } from './limits.js';
import { createOriginPolicy } from './origin.js';
import { sendError } from './ws-util.js';

/** An agent's upgrade that may go ahead (PROTOCOL 11.3): which agent, what it registers, and its session slot. */
export interface AdmittedAgent {
  readonly ok: true;
  readonly agent: AgentPrincipal;
  /** The services it registers, each allowed by its credential. */
  readonly services: readonly string[];
  readonly release: Release;
  /** The agent token, kept by the agent's session to check it again after a config reload. Never logged. */
  readonly credential: string;
}

/** An upgrade that may go ahead: who it is, and the session slot to give back when its connection ends. */
export interface Admitted {
  readonly ok: true;
  readonly principal: Principal;
  readonly release: Release;
  /**
   * The credential presented (undefined: none), kept by mux sessions so that a config reload can check it
   * against the new auth (server/reload.ts). Never logged.
   */
  readonly credential: string | undefined;
}

/** An upgrade refused: answer `status` with `{ code, message }` (and `headers`) instead of upgrading. */
export interface Refused {
  readonly ok: false;
  readonly status: number;
  readonly error: SockgateError;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface Admission {
  /**
   * Check an upgrade request. `route` is the raw-mode route name (undefined for /mux, whose routes are checked
   * per OPEN by `authorize`); `ip` is the client address as Fastify sees it (trustProxy applied).
   */
  admit(req: IncomingMessage, ip: string, route?: string): Promise<Admitted | Refused>;
  /**
   * May this principal open `route` now? Checked on every mux OPEN: a route the credential does not list, or a
   * credential whose expiry (JWT `exp`, plus the clock tolerance) has passed since the session started, gives
   * SOCKGATE_ERR_ROUTE_FORBIDDEN. Streams already open are not touched.
   */
  authorize(principal: Principal, route: string): SockgateError | undefined;
  /**
   * The principal for a credential under this admission's auth, as admit() would find it for a connection whose
   * local address is `localAddress`; rejects with the SockgateError admit() would refuse with. Used by a config
   * reload to check the credentials of sessions already open.
   */
  authenticate(credential: string | undefined, localAddress: string): Promise<Principal>;
  /**
   * Check a reverse-tunnel agent's upgrade (`GET /agent`, PROTOCOL 11.3): Host and Origin, the agent credential
   * (never anonymous), the `services` list and each service's permission, then a session slot.
   */
  admitAgent(req: IncomingMessage, ip: string): Promise<AdmittedAgent | Refused>;
  /**
   * Whether an agent token still registers these services under this admission's auth (a config reload may have
   * removed or narrowed it): SOCKGATE_ERR_AUTH_INVALID or SOCKGATE_ERR_ROUTE_FORBIDDEN when not.
   */
  checkAgent(credential: string, services: readonly string[]): SockgateError | undefined;
  /** Sessions holding a slot now (for tests and metrics). */
  readonly sessions: number;
}

/**
 * The admission step of every gateway upgrade (raw, mux, agents), from a preValidation hook: refused while the
 * gateway drains (503, `Connection: close`), then `admit`; a refusal is reported (onRefused, one log line that
 * never holds the credential) and answered with its status, headers and `{ code, message }`; an admission is
 * kept for the WebSocket handler (holdAdmitted). Returns the reply when the upgrade was refused.
 */
export async function admitUpgrade<T extends { readonly ok: true; readonly release: Release }>(
  req: FastifyRequest,
  reply: FastifyReply,
  opts: {
    /** Refuse every upgrade now with this error (draining), or undefined. */
    refusal: SockgateError | undefined;
    admit(): Promise<T | Refused>;
    admitted: WeakMap<IncomingMessage, T>;
    onRefused(err: SockgateError): void;
    /** The refusal's log line, and fields it adds (never the credential). */
    logMessage: string;
    logFields?: Record<string, unknown>;
  },
): Promise<FastifyReply | undefined> {
  if (opts.refusal) {
    opts.onRefused(opts.refusal);
    return sendError(reply.header('connection', 'close'), 503, opts.refusal);
  }
  const result = await opts.admit();
  if (!result.ok) {
    opts.onRefused(result.error);
    req.log.info({ err: result.error.code, reason: result.error.message, remote: req.ip, ...opts.logFields }, opts.logMessage);
    for (const [name, value] of Object.entries(result.headers ?? {})) reply.header(name, value);
    return sendError(reply, result.status, result.error);
  }
  holdAdmitted(opts.admitted, req.raw, result);
  return undefined;
}

/**
 * Build the checks from a resolved config. Async: the authenticator reads key files (start-up errors).
 * `counter`: the session slots to take from, kept across config reloads (its limits are the caller's to set);
 * a new one from config.limits by default.
 */
/**
 * Keep an admitted upgrade's result for its WebSocket handler. The session slot belongs to the TCP connection:
 * it is given back when that closes, whether or not the upgrade completes.
 */
export function holdAdmitted<T extends { readonly release: Release }>(
  admitted: WeakMap<IncomingMessage, T>,
  req: IncomingMessage,
  result: T,
): void {
  const socket = req.socket;
  if (socket.destroyed) result.release();
  else socket.once('close', result.release);
  admitted.set(req, result);
}

export async function createAdmission(config: GatewayConfig, options: { counter?: ConnectionCounter } = {}): Promise<Admission> {
  const origins = createOriginPolicy({
    origins: config.origins,
    trustProxy: config.trustProxy,
    ...(config.allowedHosts && { allowedHosts: config.allowedHosts }),
  });
  const authenticator = await createAuthenticator(config.auth, { allowAnonymous: config.anonymous !== 'off' });
  const agentAuthenticator = createAgentAuthenticator(config.auth);
  const counter = options.counter ?? new ConnectionCounter(config.limits);
  const toleranceMs = (config.auth?.jwt?.clockToleranceSec ?? 0) * 1000;

  function refused(error: SockgateError, status = error.httpStatus ?? 500): Refused {
    const headers = status === 401 ? { 'www-authenticate': bearerChallenge(error) } : undefined;
    return { ok: false, status, error, ...(headers && { headers }) };
  }

  async function admit(req: IncomingMessage, ip: string, route?: string): Promise<Admitted | Refused> {
    const origin = origins.check({ headers: req.headers, isTls: (req.socket as TLSSocket).encrypted === true });
    if (!origin.ok) return refused(origin.error);

    let principal: Principal;
    let credential: string | undefined;
    try {
      credential = extractCredential({ headers: req.headers, url: req.url ?? '' }).token;
      principal = await authenticate(credential, req.socket.localAddress ?? '');
    } catch (err) {
      if (err instanceof SockgateError) return refused(err);
      return refused(new SockgateError('SOCKGATE_ERR_INTERNAL', 'credential check failed', { cause: err }), 500);
    }

    if (route !== undefined) {
      // Permission first: a credential limited to some routes learns nothing about which others exist.
      if (!principal.allows(route)) return refused(new SockgateError('SOCKGATE_ERR_ROUTE_FORBIDDEN', quote(route)), 403);
      if (!config.routes.has(route)) return refused(new SockgateError('SOCKGATE_ERR_ROUTE_UNKNOWN', quote(route)), 404);
    }

    const slot = counter.tryAcquire(ip);
    if (typeof slot !== 'function') return refused(slot);
    return { ok: true, principal, release: slot, credential };
  }

  async function authenticate(credential: string | undefined, localAddress: string): Promise<Principal> {
    // Without credentials configured, anonymity is a loopback privilege: also for the plugin inside an app
    // that listens elsewhere than config.listen says.
    if (credential === undefined && config.anonymous === 'loopback' && !isLoopbackHost(localAddress)) {
      throw new SockgateError('SOCKGATE_ERR_AUTH_MISSING', 'anonymous access is for loopback connections only');
    }
    return authenticator.authenticate(credential);
  }

  function authorize(principal: Principal, route: string): SockgateError | undefined {
    if (principal.expiresAt !== undefined && Date.now() > principal.expiresAt + toleranceMs) {
      return new SockgateError('SOCKGATE_ERR_ROUTE_FORBIDDEN', 'credential expired');
    }
    if (!principal.allows(route)) return new SockgateError('SOCKGATE_ERR_ROUTE_FORBIDDEN', quote(route));
    return undefined;
  }

  async function admitAgent(req: IncomingMessage, ip: string): Promise<AdmittedAgent | Refused> {
    const origin = origins.check({ headers: req.headers, isTls: (req.socket as TLSSocket).encrypted === true });
    if (!origin.ok) return refused(origin.error);
    let agent: AgentPrincipal;
    let services: string[];
    let credential: string | undefined;
    try {
      credential = extractCredential({ headers: req.headers, url: req.url ?? '' }).token;
      agent = agentAuthenticator.authenticate(credential);
      services = parseAgentServices(req.url ?? '');
    } catch (err) {
      if (err instanceof SockgateError) return refused(err);
      return refused(new SockgateError('SOCKGATE_ERR_INTERNAL', 'credential check failed', { cause: err }), 500);
    }
    const denied = services.find((s) => !agent.allows(s));
    if (denied !== undefined) return refused(new SockgateError('SOCKGATE_ERR_ROUTE_FORBIDDEN', `the agent credential does not allow the service ${quote(denied)}`), 403);
    const slot = counter.tryAcquire(ip);
    if (typeof slot !== 'function') return refused(slot);
    return { ok: true, agent, services, release: slot, credential: credential! };
  }

  function checkAgent(credential: string, services: readonly string[]): SockgateError | undefined {
    let agent: AgentPrincipal;
    try {
      agent = agentAuthenticator.authenticate(credential);
    } catch (err) {
      return err instanceof SockgateError ? err : new SockgateError('SOCKGATE_ERR_AUTH_INVALID', 'credential check failed');
    }
    const denied = services.find((s) => !agent.allows(s));
    return denied === undefined ? undefined : new SockgateError('SOCKGATE_ERR_ROUTE_FORBIDDEN', `the agent credential no longer allows ${quote(denied)}`);
  }

  return {
    admit,
    admitAgent,
    checkAgent,
    authorize,
    authenticate,
    get sessions() {
      return counter.total;
    },
  };
}

/** A client-supplied route name for a message: quoted, and cut short so a long one cannot flood the logs. */
function quote(route: string): string {
  return JSON.stringify(route.length > 255 ? `${route.slice(0, 255)}...` : route);
}
