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
import { SockgateError } from '../shared/errors.js';
import { bearerChallenge, createAuthenticator, extractCredential, type Principal } from './auth.js';
import { isLoopbackHost, type GatewayConfig } from './config.js';
import { ConnectionCounter, type Release } from './limits.js';
import { createOriginPolicy } from './origin.js';

/** An upgrade that may go ahead: who it is, and the session slot to give back when its connection ends. */
export interface Admitted {
  readonly ok: true;
  readonly principal: Principal;
  readonly release: Release;
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
  /** Sessions holding a slot now (for tests and metrics). */
  readonly sessions: number;
}

/** Build the checks from a resolved config. Async: the authenticator reads key files (start-up errors). */
export async function createAdmission(config: GatewayConfig): Promise<Admission> {
  const origins = createOriginPolicy({
    origins: config.origins,
    trustProxy: config.trustProxy,
    ...(config.allowedHosts && { allowedHosts: config.allowedHosts }),
  });
  const authenticator = await createAuthenticator(config.auth, { allowAnonymous: config.anonymous !== 'off' });
  const counter = new ConnectionCounter(config.limits);
  const toleranceMs = (config.auth?.jwt?.clockToleranceSec ?? 0) * 1000;

  function refused(error: SockgateError, status = error.httpStatus ?? 500): Refused {
    const headers = status === 401 ? { 'www-authenticate': bearerChallenge(error) } : undefined;
    return { ok: false, status, error, ...(headers && { headers }) };
  }

  async function admit(req: IncomingMessage, ip: string, route?: string): Promise<Admitted | Refused> {
    const origin = origins.check({ headers: req.headers, isTls: (req.socket as TLSSocket).encrypted === true });
    if (!origin.ok) return refused(origin.error);

    let principal: Principal;
    try {
      const { token } = extractCredential({ headers: req.headers, url: req.url ?? '' });
      // Without credentials configured, anonymity is a loopback privilege: also for the plugin inside an app
      // that listens elsewhere than config.listen says.
      if (token === undefined && config.anonymous === 'loopback' && !isLoopbackHost(req.socket.localAddress ?? '')) {
        return refused(new SockgateError('SOCKGATE_ERR_AUTH_MISSING', 'anonymous access is for loopback connections only'));
      }
      principal = await authenticator.authenticate(token);
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
    return { ok: true, principal, release: slot };
  }

  function authorize(principal: Principal, route: string): SockgateError | undefined {
    if (principal.expiresAt !== undefined && Date.now() > principal.expiresAt + toleranceMs) {
      return new SockgateError('SOCKGATE_ERR_ROUTE_FORBIDDEN', 'credential expired');
    }
    if (!principal.allows(route)) return new SockgateError('SOCKGATE_ERR_ROUTE_FORBIDDEN', quote(route));
    return undefined;
  }

  return {
    admit,
    authorize,
    get sessions() {
      return counter.total;
    },
  };
}

/** A client-supplied route name for a message: quoted, and cut short so a long one cannot flood the logs. */
function quote(route: string): string {
  return JSON.stringify(route.length > 255 ? `${route.slice(0, 255)}...` : route);
}
