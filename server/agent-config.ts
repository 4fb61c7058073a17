/**
 * The agent's configuration (`sockgate agent --config agent.yaml`, flags laid over it): its schema, DEFAULTS
 * with units, and the checks that run before it dials. Every error is SOCKGATE_ERR_CONFIG_INVALID naming the key,
 * and never quotes the token. docs/CONFIG.md ("The agent") documents each key.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { MAX_AGENT_SERVICES, ROUTE_NAME_PATTERN } from '../shared/constants.js';
import { SockgateError } from '../shared/errors.js';
import { MIN_TOKEN_CHARS } from './auth.js';
import { endpointUrl } from './dial.js';
import { LOG_LEVELS, type LogLevel } from './log.js';
import { formatTarget, parseTarget, type Target } from './routes.js';

/** The largest delay setTimeout honours, in milliseconds. */
const MAX_TIMER_MS = 2_147_483_647;

export const AGENT_DEFAULTS = Object.freeze({
  reconnect: Object.freeze({
    /**
     * First wait before reconnecting after a lost or refused connection, in milliseconds (500 ms). Each failed
     * attempt multiplies it by `multiplier`, up to `maxDelayMs`; a connection whose first PING was answered resets it.
     */
    initialDelayMs: 500,
    /** The longest wait between attempts, in milliseconds (30 s): a gateway that is down for long is not hammered. */
    maxDelayMs: 30_000,
    /** Growth of the wait per failed attempt (2: 0.5 s, 1 s, 2 s, 4 s, ...). */
    multiplier: 2,
    /**
     * Fraction of each wait drawn at random (0.5: between half the delay and the whole). Keeps many agents that lost
     * one gateway from reconnecting in lockstep when it comes back.
     */
    jitter: 0.5,
  }),
  /** How often the agent PINGs the gateway, in milliseconds (15 s). Finds a dead link that TCP would not report for minutes. */
  pingIntervalMs: 15_000,
  /** How long a PING may go unanswered before the agent drops the connection (4001) and reconnects, in milliseconds (10 s). */
  pingTimeoutMs: 10_000,
  /** Time allowed for the WebSocket handshake with the gateway, in milliseconds (10 s). */
  connectTimeoutMs: 10_000,
  /** Time a connect to a local service may take, in milliseconds (10 s); then the stream is refused (SOCKGATE_ERR_BACKEND_TIMEOUT). */
  openTimeoutMs: 10_000,
  /** Streams the gateway may have open to this agent at once (1024); more are refused (SOCKGATE_ERR_STREAM_TOO_MANY). */
  maxStreams: 1024,
  logLevel: 'info' as LogLevel,
});

const ms = (min: number, max: number, fallback: number) =>
  z
    .number({ error: 'expected a number (milliseconds)' })
    .int({ error: 'expected a whole number (milliseconds)' })
    .min(min, { error: `must be at least ${min} (milliseconds)` })
    .max(max, { error: `must be at most ${max} (milliseconds)` })
    .default(fallback);

const d = AGENT_DEFAULTS;
const agentConfigSchema = z.strictObject({
  /** The gateway's base URL (the agent dials `<gateway>/agent`). */
  gateway: z.string({ error: 'expected a URL: ws://HOST:PORT or wss://HOST:PORT' }),
  /** The agent token (auth.agents on the gateway). Prefer tokenFile, or the SOCKGATE_TOKEN environment variable. */
  token: z.string({ error: 'expected a string' }).optional(),
  /** A file holding the token (surrounding whitespace ignored). */
  tokenFile: z.string({ error: 'expected a path' }).optional(),
  /** Service name -> local target (tcp://host:port or unix:/path). */
  services: z.record(z.string(), z.string({ error: 'expected a string: tcp://host:port or unix:/path' }), { error: 'expected an object of NAME: TARGET' }),
  reconnect: z
    .strictObject({
      initialDelayMs: ms(1, MAX_TIMER_MS, d.reconnect.initialDelayMs),
      maxDelayMs: ms(1, MAX_TIMER_MS, d.reconnect.maxDelayMs),
      multiplier: z.number({ error: 'expected a number' }).min(1, { error: 'must be at least 1' }).max(10, { error: 'must be at most 10' }).default(d.reconnect.multiplier),
      jitter: z.number({ error: 'expected a number' }).min(0, { error: 'must be at least 0' }).max(1, { error: 'must be at most 1' }).default(d.reconnect.jitter),
    })
    .prefault({}),
  pingIntervalMs: ms(100, MAX_TIMER_MS, d.pingIntervalMs),
  pingTimeoutMs: ms(100, MAX_TIMER_MS, d.pingTimeoutMs),
  connectTimeoutMs: ms(100, 600_000, d.connectTimeoutMs),
  openTimeoutMs: ms(1, 600_000, d.openTimeoutMs),
  maxStreams: z.number({ error: 'expected a number (streams)' }).int().min(1, { error: 'must be at least 1 (streams)' }).max(65_536, { error: 'must be at most 65536 (streams)' }).default(d.maxStreams),
  logLevel: z.enum(Object.keys(LOG_LEVELS) as [LogLevel, ...LogLevel[]], { error: `expected one of ${Object.keys(LOG_LEVELS).join(', ')}` }).default(d.logLevel),
});

export type AgentConfigInput = z.input<typeof agentConfigSchema>;

/** A checked agent configuration. */
export interface AgentConfig {
  readonly gateway: string;
  readonly token: string;
  /** Service name -> local target; tcp and unix only. */
  readonly services: ReadonlyMap<string, Target>;
  readonly reconnect: { readonly initialDelayMs: number; readonly maxDelayMs: number; readonly multiplier: number; readonly jitter: number };
  readonly pingIntervalMs: number;
  readonly pingTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly openTimeoutMs: number;
  readonly maxStreams: number;
  readonly logLevel: LogLevel;
}

/**
 * Check an agent configuration and apply defaults. `env` supplies SOCKGATE_TOKEN when neither token nor tokenFile
 * is given. Throws SOCKGATE_ERR_CONFIG_INVALID naming every bad key.
 */
export function resolveAgentConfig(input: unknown, env: Record<string, string | undefined> = {}): AgentConfig {
  const parsed = agentConfigSchema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const at = issue.path.map(String).join('.') || 'config';
      return issue.code === 'unrecognized_keys' ? issue.keys.map((k) => `${at === 'config' ? '' : `${at}.`}${k}: unknown key`).join('; ') : `${at}: ${issue.message}`;
    });
    throw invalid(problems.join('; '));
  }
  const data = parsed.data;
  const problems: string[] = [];
  try {
    endpointUrl(data.gateway, '/agent');
  } catch (err) {
    problems.push(`gateway: ${(err as Error).message.replace(/^invalid configuration: /, '')}`);
  }
  let token: string | undefined;
  if (data.token !== undefined && data.tokenFile !== undefined) problems.push('token: give token or tokenFile, not both');
  else if (data.tokenFile !== undefined) {
    try {
      token = readFileSync(data.tokenFile, 'utf8').trim();
    } catch (err) {
      problems.push(`tokenFile: cannot read ${data.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  } else token = data.token ?? env.SOCKGATE_TOKEN;
  if (token === undefined) problems.push('token: missing (--token, --token-file, tokenFile or SOCKGATE_TOKEN)');
  else if (token.length < MIN_TOKEN_CHARS || /\s/.test(token)) problems.push(`token: must be at least ${MIN_TOKEN_CHARS} characters, without spaces`);

  const services = new Map<string, Target>();
  const names = Object.keys(data.services);
  if (names.length === 0) problems.push('services: expose at least one service (--expose NAME=TARGET)');
  if (names.length > MAX_AGENT_SERVICES) problems.push(`services: at most ${MAX_AGENT_SERVICES}`);
  for (const [name, text] of Object.entries(data.services)) {
    if (!ROUTE_NAME_PATTERN.test(name)) {
      problems.push(`services.${name}: a service name is 1 to 255 characters of A-Z a-z 0-9 . _ -`);
      continue;
    }
    try {
      const target = parseTarget(text);
      if (target.kind !== 'tcp' && target.kind !== 'unix') throw invalid(`${formatTarget(target)}: an agent exposes tcp://host:port or unix:/path`);
      services.set(name, target);
    } catch (err) {
      problems.push(`services.${name}: ${(err as Error).message.replace(/^invalid configuration: /, '')}`);
    }
  }
  if (data.reconnect.maxDelayMs < data.reconnect.initialDelayMs) problems.push('reconnect.maxDelayMs: must be at least reconnect.initialDelayMs');
  if (problems.length > 0) throw invalid(problems.join('; '));
  return Object.freeze({
    gateway: data.gateway,
    token: token!,
    services,
    reconnect: Object.freeze({ ...data.reconnect }),
    pingIntervalMs: data.pingIntervalMs,
    pingTimeoutMs: data.pingTimeoutMs,
    connectTimeoutMs: data.connectTimeoutMs,
    openTimeoutMs: data.openTimeoutMs,
    maxStreams: data.maxStreams,
    logLevel: data.logLevel,
  });
}

/**
 * The wait before reconnect attempt `attempt` (0 for the first), in milliseconds: exponential, capped, with the
 * `jitter` fraction drawn at random (`random` in [0, 1)).
 */
export function backoffDelay(reconnect: AgentConfig['reconnect'], attempt: number, random: () => number = Math.random): number {
  const exp = reconnect.initialDelayMs * Math.pow(reconnect.multiplier, Math.min(attempt, 64));
  const capped = Math.min(reconnect.maxDelayMs, exp);
  return Math.round(capped * (1 - reconnect.jitter * random()));
}

function invalid(detail: string): SockgateError {
  return new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', detail);
}
