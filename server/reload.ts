/**
 * The configuration in force, behind one holder, so that a reload (SIGHUP in the CLI, gateway.reload()) swaps a
 * new one in without touching what is open:
 *
 * - New upgrades are admitted under the new Host, Origin and credential rules, and take session slots under the
 *   new maxSessions / maxSessionsPerIp (one counter survives reloads, so open sessions keep their slots).
 * - Every mux OPEN looks its route up in the new route table and checks the session's credential as the new auth
 *   sees it: each open mux session's credential is checked again under the new auth before the swap, so a token
 *   removed from the file opens nothing more, and a token whose route list changed gets the new list.
 * - New sessions get the new limits (timeouts, windows, rates, keepalive); open sessions keep theirs.
 * - Streams already open are never closed by a reload, also when their route is gone.
 *
 * A new config that fails any check (a bad key, an unreadable key file) is refused whole, with the error, and the
 * running one stays. Keys that are read only at start (RESTART_KEYS) keep their running values; the result names
 * them so the caller can say a restart is needed.
 */
import { SockgateError } from '../shared/errors.js';
import { createAdmission, type Admission, type Admitted, type Refused } from './admission.js';
import type { Principal } from './auth.js';
import { formatListen, isResolvedConfig, resolveConfig, type GatewayConfig } from './config.js';
import { ConnectionCounter } from './limits.js';

/**
 * Keys a running gateway cannot change: the addresses it listens on, Fastify's trustProxy, the demo's routes,
 * the WebSocket server's maxPayload and the HTTP server's headersTimeout.
 */
export const RESTART_KEYS = ['listen', 'admin.listen', 'trustProxy', 'demo', 'limits.maxMessageBytes', 'limits.handshakeTimeoutMs'] as const;
export type RestartKey = (typeof RESTART_KEYS)[number];

export interface ReloadResult {
  /** The configuration now in force. */
  readonly config: GatewayConfig;
  /** Keys the new config changes that need a restart; their running values were kept. */
  readonly restartNeeded: readonly RestartKey[];
  /** Open mux sessions whose credential the new auth refuses: their new OPENs are refused from now on. */
  readonly revoked: number;
}

/** An upgrade admitted, with the config generation whose rules admitted it. */
export type LiveAdmitted = Admitted & { readonly generation: number };

/** A mux session's credential, checked again at each reload. Made by LiveConfig.track(). */
export interface SessionCredential {
  /** The principal under the auth in force; undefined once a reload's auth refused the credential. */
  principal: Principal | undefined;
  /** Why a reload refused the credential. */
  revokedBy: SockgateError | undefined;
  /** The config generation the principal was found under. */
  generation: number;
  checking: boolean;
  readonly credential: string | undefined;
  readonly localAddress: string;
}

export class LiveConfig {
  #config: GatewayConfig;
  #admission: Admission;
  #generation = 1;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #sessions = new Set<SessionCredential>();
  /** Session slots, shared by every generation. */
  readonly counter: ConnectionCounter;

  private constructor(config: GatewayConfig, admission: Admission, counter: ConnectionCounter) {
    this.#config = config;
    this.#admission = admission;
    this.counter = counter;
  }

  /** The holder for a resolved config; rejects like createAdmission (key files). */
  static async create(config: GatewayConfig): Promise<LiveConfig> {
    const counter = new ConnectionCounter(config.limits);
    return new LiveConfig(config, await createAdmission(config, { counter }), counter);
  }

  /** The configuration in force. Read it at each use: a reload replaces it. */
  get config(): GatewayConfig {
    return this.#config;
  }

  get admission(): Admission {
    return this.#admission;
  }

  /** Incremented by every successful reload. */
  get generation(): number {
    return this.#generation;
  }

  /** admission.admit() under the rules in force, remembering which generation admitted. */
  async admit(...args: Parameters<Admission['admit']>): Promise<LiveAdmitted | Refused> {
    const generation = this.#generation;
    const result = await this.#admission.admit(...args);
    return result.ok ? { ...result, generation } : result;
  }

  /** Follow a mux session's credential across reloads, until untrack(). */
  track(admitted: LiveAdmitted, localAddress: string): SessionCredential {
    const cred: SessionCredential = {
      principal: admitted.principal,
      revokedBy: undefined,
      generation: admitted.generation,
      checking: false,
      credential: admitted.credential,
      localAddress,
    };
    this.#sessions.add(cred);
    return cred;
  }

  untrack(cred: SessionCredential): void {
    this.#sessions.delete(cred);
  }

  /**
   * May this session open `route` now, under the auth in force? SOCKGATE_ERR_ROUTE_FORBIDDEN when its credential
   * does not allow the route, has expired, or was refused by a reload's auth.
   */
  authorize(cred: SessionCredential, route: string): SockgateError | undefined {
    // Admitted under rules a reload replaced while the upgrade was under way: check again (milliseconds).
    if (cred.generation !== this.#generation) this.#recheck(cred);
    if (!cred.principal) {
      return new SockgateError('SOCKGATE_ERR_ROUTE_FORBIDDEN', `credential no longer accepted since a configuration reload (${cred.revokedBy?.code ?? 'refused'})`);
    }
    return this.#admission.authorize(cred.principal, route);
  }

  /**
   * Swap in a new configuration (a plain object, checked here, or a resolved one). Rejects with the
   * SOCKGATE_ERR_CONFIG_INVALID error (or a key file's) and keeps the running config when anything is wrong.
   * `prepare` runs after the checks and before the swap (e.g. start a built-in backend the new routes need); its
   * failure also keeps the running config. Reloads run one at a time, in call order.
   */
  reload(input: unknown, prepare?: (config: GatewayConfig) => Promise<void>): Promise<ReloadResult> {
    const run = this.#queue.then(() => this.#reload(input, prepare));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #reload(input: unknown, prepare?: (config: GatewayConfig) => Promise<void>): Promise<ReloadResult> {
    const running = this.#config;
    let next = resolveConfig(input);
    const restartNeeded = changedRestartKeys(running, next);
    if (restartNeeded.length > 0) {
      if (isResolvedConfig(input)) {
        throw new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', `${restartNeeded.join(', ')}: cannot change without a restart`);
      }
      // The rest of the config must hold with the addresses actually in use: e.g. anonymous access and the
      // default allowedHosts depend on the listen address.
      next = resolveConfig(withRunningValues(input as Record<string, unknown>, running));
    }
    const admission = await createAdmission(next, { counter: this.counter });
    await prepare?.(next);

    const tracked = [...this.#sessions];
    const checks = await Promise.all(tracked.map((cred) => check(admission, cred)));
    // The swap: synchronous, so no OPEN sees half of it.
    this.counter.setLimits(next.limits);
    this.#config = next;
    this.#admission = admission;
    const generation = ++this.#generation;
    let revoked = 0;
    tracked.forEach((cred, i) => {
      apply(cred, checks[i]!, generation);
      if (!cred.principal) revoked++;
    });
    return { config: next, restartNeeded, revoked };
  }

  #recheck(cred: SessionCredential): void {
    if (cred.checking) return;
    cred.checking = true;
    const generation = this.#generation;
    void check(this.#admission, cred).then((outcome) => {
      cred.checking = false;
      if (!this.#sessions.has(cred)) return;
      // A newer reload re-checked it already if it was tracked then, or will at the next OPEN.
      if (this.#generation === generation) apply(cred, outcome, generation);
    });
  }
}

type Outcome = { principal: Principal } | { error: SockgateError };

async function check(admission: Admission, cred: SessionCredential): Promise<Outcome> {
  try {
    return { principal: await admission.authenticate(cred.credential, cred.localAddress) };
  } catch (err) {
    return { error: err instanceof SockgateError ? err : new SockgateError('SOCKGATE_ERR_AUTH_INVALID', 'credential check failed', { cause: err }) };
  }
}

function apply(cred: SessionCredential, outcome: Outcome, generation: number): void {
  cred.generation = generation;
  if ('principal' in outcome) {
    cred.principal = outcome.principal;
    cred.revokedBy = undefined;
  } else {
    cred.principal = undefined;
    cred.revokedBy = outcome.error;
  }
}

/** The RESTART_KEYS whose values differ between the running config and a new one. */
export function changedRestartKeys(running: GatewayConfig, next: GatewayConfig): RestartKey[] {
  const admin = (c: GatewayConfig): string | undefined => (c.admin ? formatListen(c.admin.listen) : undefined);
  const changed: Record<RestartKey, boolean> = {
    listen: formatListen(running.listen) !== formatListen(next.listen),
    'admin.listen': admin(running) !== admin(next),
    trustProxy: running.trustProxy !== next.trustProxy,
    demo: running.demo !== next.demo,
    'limits.maxMessageBytes': running.limits.maxMessageBytes !== next.limits.maxMessageBytes,
    'limits.handshakeTimeoutMs': running.limits.handshakeTimeoutMs !== next.limits.handshakeTimeoutMs,
  };
  return RESTART_KEYS.filter((key) => changed[key]);
}

/** A config input with the restart keys set to the running values (the input already resolved once, so it is an object). */
function withRunningValues(input: Record<string, unknown>, running: GatewayConfig): Record<string, unknown> {
  const out: Record<string, unknown> = {
    ...input,
    listen: formatListen(running.listen),
    trustProxy: running.trustProxy,
    demo: running.demo,
    limits: {
      ...(input.limits as Record<string, unknown> | undefined),
      maxMessageBytes: running.limits.maxMessageBytes,
      handshakeTimeoutMs: running.limits.handshakeTimeoutMs,
    },
  };
  if (running.admin) out.admin = { listen: formatListen(running.admin.listen) };
  else delete out.admin;
  return out;
}
