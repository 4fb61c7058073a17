/**
 * Which reverse-tunnel agent serves which service (PROTOCOL 11.4), behind a small interface so that a later
 * registry can share it between gateway replicas (e.g. in Redis) without touching the endpoint or the routes.
 * The in-process `LocalAgentRegistry` is the default.
 *
 * Policy: one agent per service, and the newest registration wins. An agent registering a service another agent
 * serves replaces that agent: the older one is closed (4005 SOCKGATE_ERR_SESSION_REPLACED) with all its services,
 * so a restarted agent, or one that reconnects before the gateway noticed its old link died, takes over at once.
 */
import { AGENT_SERVICES_PARAM, MAX_AGENT_SERVICES, ROUTE_NAME_PATTERN } from '../shared/constants.js';
import { SockgateError } from '../shared/errors.js';
import type { Stream } from '../shared/session.js';

/** One connected agent session, as a registry holds it. */
export interface AgentLink {
  /** Unique per connection (`agent-3`), for logs. */
  readonly id: string;
  /** The agent credential's name (`auth.agents[].name`). */
  readonly name: string;
  /** The services it registered (PROTOCOL 11.3), fixed for the session. */
  readonly services: readonly string[];
  /** Open a stream to one of its services: sends OPEN on the agent's session. Throws a SockgateError. */
  open(service: string): Stream;
  /** Close this link because `by` registered `service` after it (4005). */
  replace(service: string, by: AgentLink): void;
}

export interface AgentRegistry {
  /** Make `link` the agent serving each of its services; agents serving any of them before are replaced. */
  register(link: AgentLink): Promise<void>;
  /** Forget `link` (its session ended). Services another agent has taken over since are left alone. */
  unregister(link: AgentLink): Promise<void>;
  /** The agent serving `service` now, if any. */
  lookup(service: string): Promise<AgentLink | undefined>;
  /**
   * Open a stream to `service` on the agent serving it. Rejects with SOCKGATE_ERR_ROUTE_UNAVAILABLE when none
   * does, or with the error the session gives (e.g. SOCKGATE_ERR_STREAM_SHUTTING_DOWN).
   */
  openStream(service: string): Promise<Stream>;
}

/** The registry of one gateway process: a map from service name to the agent link serving it. */
export class LocalAgentRegistry implements AgentRegistry {
  readonly #byService = new Map<string, AgentLink>();

  async register(link: AgentLink): Promise<void> {
    this.registerNow(link);
  }

  async unregister(link: AgentLink): Promise<void> {
    for (const service of link.services) {
      if (this.#byService.get(service) === link) this.#byService.delete(service);
    }
  }

  async lookup(service: string): Promise<AgentLink | undefined> {
    return this.#byService.get(service);
  }

  async openStream(service: string): Promise<Stream> {
    const link = this.#byService.get(service);
    if (!link) throw new SockgateError('SOCKGATE_ERR_ROUTE_UNAVAILABLE', `no agent serves ${JSON.stringify(service)}`);
    return link.open(service);
  }

  /** Services served now, with the agent serving each (for tests and metrics). */
  get services(): ReadonlyMap<string, AgentLink> {
    return this.#byService;
  }

  /** Synchronous: the map is updated before any replaced link hears of it, so its close finds nothing of its own. */
  private registerNow(link: AgentLink): void {
    const replaced = new Map<AgentLink, string>();
    for (const service of link.services) {
      const old = this.#byService.get(service);
      if (old && old !== link && !replaced.has(old)) replaced.set(old, service);
    }
    for (const old of replaced.keys()) {
      for (const service of old.services) if (this.#byService.get(service) === old) this.#byService.delete(service);
    }
    for (const service of link.services) this.#byService.set(service, link);
    for (const [old, service] of replaced) old.replace(service, link);
  }
}

/**
 * The services an agent's upgrade request lists (PROTOCOL 11.3): `?services=a,b`, given once, one to
 * MAX_AGENT_SERVICES distinct route names. Throws SOCKGATE_ERR_AGENT_BAD_SERVICES naming what is wrong.
 */
export function parseAgentServices(url: string): string[] {
  const q = url.indexOf('?');
  const hash = url.indexOf('#', q);
  const params = new URLSearchParams(q < 0 ? '' : url.slice(q + 1, hash < 0 ? undefined : hash));
  const values = params.getAll(AGENT_SERVICES_PARAM);
  const bad = (why: string): never => {
    throw new SockgateError('SOCKGATE_ERR_AGENT_BAD_SERVICES', why);
  };
  if (values.length === 0) bad(`list the services in the query parameter ${AGENT_SERVICES_PARAM}=a,b`);
  if (values.length > 1) bad(`${AGENT_SERVICES_PARAM} given more than once`);
  const names = values[0]!.split(',');
  if (names.length > MAX_AGENT_SERVICES) bad(`at most ${MAX_AGENT_SERVICES} services`);
  const seen = new Set<string>();
  for (const name of names) {
    if (!ROUTE_NAME_PATTERN.test(name)) bad(`${clip(name)} is not a service name (1 to 255 characters of A-Z a-z 0-9 . _ -)`);
    if (seen.has(name)) bad(`${clip(name)} is listed twice`);
    seen.add(name);
  }
  return names;
}

function clip(text: string): string {
  return JSON.stringify(text.length > 64 ? `${text.slice(0, 64)}...` : text);
}
