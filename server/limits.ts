/**
 * Resource limits: the defaults, their check, and small allocation-light helpers the gateway runs per session
 * (a token bucket for OPEN/RESET, a session counter per client address, an idle timer, the handshake timeout).
 * Each default below says its unit and the failure it prevents; docs/SECURITY.md maps them to the threat model.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { z } from 'zod';
import { INITIAL_WINDOW, MAX_FRAME_BYTES, MAX_WINDOW } from '../shared/constants.js';
import { SockgateError } from '../shared/errors.js';

/** The largest delay setTimeout honours; a longer one silently fires after 1 ms. */
const MAX_TIMER_MS = 2_147_483_647;

export const LIMIT_DEFAULTS = Object.freeze({
  /**
   * Largest WebSocket message accepted, in bytes (1 MiB): ws's `maxPayload`, checked from the frame header
   * before buffering (close 1009). Raw mode's limit; mux sessions are held to MAX_FRAME_BYTES (65,542,
   * PROTOCOL 1.4) whatever this says. Prevents a client from making the gateway buffer a huge message (ws's
   * own default is 100 MiB).
   */
  maxMessageBytes: 1_048_576,
  /** Sessions open at once on the whole gateway (10,000). Prevents file-descriptor and memory exhaustion. */
  maxSessions: 10_000,
  /**
   * Sessions open at once from one client address (100; IPv6 counted per /64, see ipKey). Prevents one client
   * from taking every session slot. Behind a reverse proxy this needs trustProxy, or every client is the proxy.
   */
  maxSessionsPerIp: 100,
  /** Streams open at once on one mux session (256). Prevents one session from opening unbounded backend sockets. */
  maxStreamsPerSession: 256,
  /**
   * OPENs (and peer RESETs) one session may send per second, sustained (100/s). Prevents "rapid reset" floods
   * (HTTP/2 CVE-2023-44487): each OPEN costs a backend connect, and a stream reset at once never counts
   * against maxStreamsPerSession.
   */
  opensPerSecond: 100,
  /** Burst allowance for opensPerSecond, in OPENs (200): a page that opens many streams at load still works. */
  opensBurst: 200,
  /**
   * Time allowed to send the whole HTTP upgrade request head, in milliseconds (10 s). Prevents slowloris:
   * holding sockets open by sending headers a byte at a time (Node's own default is 60 s).
   */
  handshakeTimeoutMs: 10_000,
  /**
   * Close a session after this long with no stream bytes either way, in milliseconds; 0 turns it off, the
   * default. Off because it protects against no attacker (one byte resets it), and terminals and VNC sit silent
   * for hours; dead peers are the ping timeout's job and slot hogging is maxSessions/maxSessionsPerIp's. Set it
   * to reap forgotten sessions.
   */
  idleTimeoutMs: 0,
  /**
   * Time a backend connect may take, in milliseconds (10 s). Prevents a black-holed backend from pinning a
   * stream slot (and its client) for the OS's connect timeout, which can be minutes.
   */
  openTimeoutMs: 10_000,
  /**
   * Largest receive window of one mux stream, in bytes (4 MiB; INITIAL_WINDOW..MAX_WINDOW): the most the gateway
   * holds for a stream whose backend is slow (PROTOCOL 5.6), so it bounds memory per stream.
   */
  maxWindowBytes: 4_194_304,
  /**
   * The receive windows of one mux session's streams that are receiving data, together, in bytes (16 MiB; at
   * least INITIAL_WINDOW): each one's window grows only to its share, this over the streams that received DATA
   * in the last second (never below INITIAL_WINDOW), PROTOCOL 5.7. Keeps a session's busy streams even; a
   * stream that is busy alone still grows to maxWindowBytes.
   */
  maxSessionWindowBytes: 16_777_216,
  /**
   * Bytes waiting to reach one WebSocket client before the gateway stops reading backends for it (1 MiB).
   * Prevents a slow or stalled client from making the gateway buffer a fast backend's output without bound.
   */
  maxTransportBufferedBytes: 1_048_576,
  /**
   * How often the gateway pings every session, in milliseconds (30 s); 0 turns keepalive off. A WebSocket ping
   * frame for raw and mux, plus an app-level PING (PROTOCOL 6.1) for mux. Finds dead peers (a laptop that went to
   * sleep, a NAT that forgot the mapping) whose sockets would otherwise hold a session slot and their backends for
   * the operating system's TCP timeouts, which can be hours; the traffic also keeps proxies and NATs from dropping
   * a quiet connection. server/keepalive.ts.
   */
  keepaliveIntervalMs: 30_000,
  /**
   * How long a peer has to answer a keepalive ping, in milliseconds (10 s), counted from when the ping left for
   * the network, so a slow link's queue does not count against it. A peer that sends nothing back in that time
   * (no pong, no message) is closed with 4001 SOCKGATE_ERR_SESSION_PING_TIMEOUT.
   */
  keepaliveTimeoutMs: 10_000,
  /**
   * On a graceful shutdown (SIGTERM, gateway.drain()), how long streams under way may take to finish, in
   * milliseconds (30 s); then what is left is closed (mux 4003 SOCKGATE_ERR_SESSION_DRAIN_TIMEOUT, raw 1001).
   * Prevents a shutdown that never ends because one client keeps a stream open. server/drain.ts.
   */
  drainTimeoutMs: 30_000,
});

export type Limits = { -readonly [K in keyof typeof LIMIT_DEFAULTS]: number };

/**
 * Allowed range of each limit, inclusive, and its unit: the one table of bounds (docs/CONFIG.md quotes it).
 * maxMessageBytes is never below one mux frame: /mux and /raw share one WebSocket server.
 */
export const LIMIT_RANGES = Object.freeze({
  maxMessageBytes: [MAX_FRAME_BYTES, 64 * 1_048_576, 'bytes'],
  maxSessions: [1, 1_000_000, 'sessions'],
  maxSessionsPerIp: [1, 1_000_000, 'sessions'],
  maxStreamsPerSession: [1, 65_536, 'streams'],
  opensPerSecond: [1, 100_000, 'opens per second'],
  opensBurst: [1, 1_000_000, 'opens'],
  handshakeTimeoutMs: [100, 10 * 60_000, 'milliseconds'],
  idleTimeoutMs: [0, MAX_TIMER_MS, 'milliseconds; 0 is off'],
  openTimeoutMs: [1, 10 * 60_000, 'milliseconds'],
  maxWindowBytes: [INITIAL_WINDOW, MAX_WINDOW, 'bytes'],
  maxSessionWindowBytes: [INITIAL_WINDOW, 1_073_741_824, 'bytes'],
  // Below one full frame the backend would be paused after every chunk.
  maxTransportBufferedBytes: [MAX_FRAME_BYTES, 256 * 1_048_576, 'bytes'],
  keepaliveIntervalMs: [0, MAX_TIMER_MS, 'milliseconds; 0 is off'],
  keepaliveTimeoutMs: [1, 10 * 60_000, 'milliseconds'],
  drainTimeoutMs: [0, MAX_TIMER_MS, 'milliseconds'],
} as const satisfies Record<keyof typeof LIMIT_DEFAULTS, readonly [number, number, string]>);

function limitSchema<K extends keyof typeof LIMIT_RANGES>(key: K) {
  const [min, max, unit] = LIMIT_RANGES[key];
  return z
    .number({ error: `expected a number (${unit})` })
    .int({ error: `expected a whole number (${unit})` })
    .min(min, { error: `must be at least ${min} (${unit})` })
    .max(max, { error: `must be at most ${max} (${unit})` })
    .default(LIMIT_DEFAULTS[key]);
}

/**
 * The `limits` config key: every key optional (its default from LIMIT_DEFAULTS), unknown keys rejected. The
 * gateway config embeds it (server/config.ts); resolveLimits() checks it on its own.
 */
export const limitsConfigSchema = z.strictObject(
  {
    maxMessageBytes: limitSchema('maxMessageBytes'),
    maxSessions: limitSchema('maxSessions'),
    maxSessionsPerIp: limitSchema('maxSessionsPerIp'),
    maxStreamsPerSession: limitSchema('maxStreamsPerSession'),
    opensPerSecond: limitSchema('opensPerSecond'),
    opensBurst: limitSchema('opensBurst'),
    handshakeTimeoutMs: limitSchema('handshakeTimeoutMs'),
    idleTimeoutMs: limitSchema('idleTimeoutMs'),
    openTimeoutMs: limitSchema('openTimeoutMs'),
    maxWindowBytes: limitSchema('maxWindowBytes'),
    maxSessionWindowBytes: limitSchema('maxSessionWindowBytes'),
    maxTransportBufferedBytes: limitSchema('maxTransportBufferedBytes'),
    keepaliveIntervalMs: limitSchema('keepaliveIntervalMs'),
    keepaliveTimeoutMs: limitSchema('keepaliveTimeoutMs'),
    drainTimeoutMs: limitSchema('drainTimeoutMs'),
  },
  { error: 'expected an object of limits' },
);
export type LimitsConfig = z.input<typeof limitsConfigSchema>;

/**
 * The limits in force: the defaults with the given keys replaced. Throws SOCKGATE_ERR_CONFIG_INVALID naming
 * the key (`limits.maxSessions: must be at least 1 (sessions)`) for a bad or unknown key.
 */
export function resolveLimits(input: LimitsConfig | undefined = {}): Limits {
  const parsed = limitsConfigSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = ['limits', ...issue.path.map(String)].join('.');
    throw new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', `${path}: ${issue.message}`, { cause: parsed.error });
  }
  return parsed.data;
}

/**
 * A token bucket: `ratePerSec` tokens a second, holding at most `burst`. Starts full. Allocation-free; the
 * caller passes a monotonic clock in milliseconds (performance.now()), so wall-clock jumps neither refill nor
 * starve it.
 */
export class TokenBucket {
  #tokens: number;
  #last = Number.NaN;

  constructor(
    /** Sustained rate, in tokens per second. */
    readonly ratePerSec: number,
    /** Capacity, in tokens: how many may be taken at once after a quiet spell. */
    readonly burst: number,
  ) {
    if (!(Number.isFinite(ratePerSec) && ratePerSec > 0)) throw new RangeError(`ratePerSec ${ratePerSec} must be > 0`);
    if (!(Number.isInteger(burst) && burst >= 1)) throw new RangeError(`burst ${burst} must be an integer >= 1`);
    this.#tokens = burst;
  }

  /** Take `cost` tokens at time `now` (ms); false, taking nothing, when there are not enough. */
  take(now: number, cost = 1): boolean {
    const elapsed = now - this.#last;
    // NaN on the first call (nothing to refill); a clock going backwards refills nothing either.
    if (elapsed > 0) this.#tokens = Math.min(this.burst, this.#tokens + (elapsed * this.ratePerSec) / 1000);
    this.#last = now;
    if (this.#tokens < cost) return false;
    this.#tokens -= cost;
    return true;
  }

  /** Tokens available now (for tests and metrics). */
  get tokens(): number {
    return this.#tokens;
  }
}

/**
 * The key one client address is counted under: IPv4 as is; IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as its IPv4;
 * other IPv6 by its /64, because one host is usually handed a whole /64 and could otherwise take a new address
 * per session. Anything else (e.g. '' for a Unix-socket listener) is its own key.
 */
export function ipKey(ip: string): string {
  const zone = ip.indexOf('%');
  const addr = zone >= 0 ? ip.slice(0, zone) : ip;
  if (isIPv4(addr)) return addr;
  if (!isIPv6(addr)) return ip;
  const h = expandIPv6(addr);
  if (h[0] === 0 && h[1] === 0 && h[2] === 0 && h[3] === 0 && h[4] === 0 && h[5] === 0xffff) {
    return `${h[6]! >> 8}.${h[6]! & 0xff}.${h[7]! >> 8}.${h[7]! & 0xff}`;
  }
  return `${h[0]!.toString(16)}:${h[1]!.toString(16)}:${h[2]!.toString(16)}:${h[3]!.toString(16)}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (net.isIPv6 already said yes). */
function expandIPv6(addr: string): number[] {
  const groups = (part: string): number[] => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (g.includes('.')) {
        const [a, b, c, d] = g.split('.').map(Number) as [number, number, number, number];
        out.push((a << 8) | b, (c << 8) | d);
      } else out.push(parseInt(g, 16));
    }
    return out;
  };
  const gap = addr.indexOf('::');
  if (gap < 0) return groups(addr);
  const head = groups(addr.slice(0, gap));
  const tail = groups(addr.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/** Gives a session slot back; calling it again does nothing. */
export type Release = () => void;

/**
 * Counts live sessions, in total and per client address (ipKey). Memory is bounded by the live sessions: an
 * address's entry is deleted when its count returns to zero.
 */
export class ConnectionCounter {
  #maxSessions = 1;
  #maxSessionsPerIp = 1;
  #total = 0;
  readonly #perIp = new Map<string, number>();

  constructor(options: { maxSessions: number; maxSessionsPerIp: number }) {
    this.setLimits(options);
  }

  get maxSessions(): number {
    return this.#maxSessions;
  }

  get maxSessionsPerIp(): number {
    return this.#maxSessionsPerIp;
  }

  /**
   * New limits (a config reload) for the slots taken from now on. Slots already held are kept, also above a
   * lower limit: no session is closed for it.
   */
  setLimits(options: { maxSessions: number; maxSessionsPerIp: number }): void {
    for (const key of ['maxSessions', 'maxSessionsPerIp'] as const) {
      const v = options[key];
      if (!(Number.isInteger(v) && v >= 1)) throw new RangeError(`${key} ${v} must be an integer >= 1`);
    }
    this.#maxSessions = options.maxSessions;
    this.#maxSessionsPerIp = options.maxSessionsPerIp;
  }

  /**
   * Take a slot for a session from `ip`. Returns the Release to call when the session ends (exactly once is
   * enough; more is harmless), or, taking nothing, SOCKGATE_ERR_LIMIT_SESSIONS (HTTP 503) when the gateway is
   * full or SOCKGATE_ERR_LIMIT_SESSIONS_PER_IP (HTTP 429) when that address is. Tell them apart with
   * `typeof result === 'function'`.
   */
  tryAcquire(ip: string): Release | SockgateError {
    if (this.#total >= this.maxSessions) {
      return new SockgateError('SOCKGATE_ERR_LIMIT_SESSIONS', `maxSessions (${this.maxSessions}) reached`);
    }
    const key = ipKey(ip);
    const n = this.#perIp.get(key) ?? 0;
    if (n >= this.maxSessionsPerIp) {
      return new SockgateError('SOCKGATE_ERR_LIMIT_SESSIONS_PER_IP', `maxSessionsPerIp (${this.maxSessionsPerIp}) reached for ${key}`);
    }
    this.#perIp.set(key, n + 1);
    this.#total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#total--;
      const left = this.#perIp.get(key)! - 1;
      if (left === 0) this.#perIp.delete(key);
      else this.#perIp.set(key, left);
    };
  }

  /** Sessions holding a slot. */
  get total(): number {
    return this.#total;
  }

  /** Addresses holding at least one slot: the size of the map, bounded by `total`. */
  get addresses(): number {
    return this.#perIp.size;
  }

  /** Slots held by the address `ip` (after ipKey). */
  countFor(ip: string): number {
    return this.#perIp.get(ipKey(ip)) ?? 0;
  }
}

/**
 * Fires `onIdle` once when `touch()` has not been called for `timeoutMs` milliseconds (0: never). touch() only
 * records the time, so calling it per chunk is cheap; one unref'd timer re-arms itself for the time left.
 * Starting counts as activity.
 */
export class IdleTimer {
  readonly timeoutMs: number;
  readonly #onIdle: () => void;
  readonly #now: () => number;
  #last: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #done = false;

  /**
   * @param timeoutMs idle time before onIdle, in milliseconds; 0 disables the timer.
   * @param now a monotonic clock in milliseconds (default performance.now).
   */
  constructor(timeoutMs: number, onIdle: () => void, now: () => number = () => performance.now()) {
    if (!(Number.isInteger(timeoutMs) && timeoutMs >= 0 && timeoutMs <= MAX_TIMER_MS)) {
      throw new RangeError(`timeoutMs ${timeoutMs} must be an integer in 0..${MAX_TIMER_MS}`);
    }
    this.timeoutMs = timeoutMs;
    this.#onIdle = onIdle;
    this.#now = now;
    this.#last = now();
    if (timeoutMs === 0) this.#done = true;
    else this.#arm(timeoutMs);
  }

  /** Record activity (bytes either way). */
  touch(): void {
    if (!this.#done) this.#last = this.#now();
  }

  /** Cancel; onIdle will not be called. Idempotent. */
  stop(): void {
    this.#done = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** False once fired or stopped (or when disabled). */
  get active(): boolean {
    return !this.#done;
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => this.#check(), ms);
    this.#timer.unref?.();
  }

  #check(): void {
    this.#timer = undefined;
    if (this.#done) return;
    const left = this.#last + this.timeoutMs - this.#now();
    if (left > 0) return this.#arm(Math.ceil(left));
    this.#done = true;
    this.#onIdle();
  }
}

/**
 * Node HTTP server options bounding the upgrade handshake (pass as Fastify's `http`, or merge into `https`):
 * the whole request head must arrive within `handshakeTimeoutMs`, else Node answers 408 and closes. Node checks
 * at `connectionsCheckingInterval` (its default is 30 s), so that is tightened too. Upgraded WebSockets are not
 * affected: Node stops tracking a socket once it is upgraded.
 */
export function handshakeHttpOptions(handshakeTimeoutMs: number): {
  headersTimeout: number;
  requestTimeout: number;
  connectionsCheckingInterval: number;
} {
  checkHandshakeTimeout(handshakeTimeoutMs);
  return {
    headersTimeout: handshakeTimeoutMs,
    // Node refuses to create a server whose headersTimeout exceeds requestTimeout (default 300 s).
    requestTimeout: Math.max(300_000, handshakeTimeoutMs),
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(handshakeTimeoutMs / 4))),
  };
}

/**
 * The same bound applied to an existing server (e.g. the plugin inside a user's Fastify app). The checking
 * interval cannot change after creation, so enforcement may lag by up to that interval (30 s by default).
 */
export function applyHandshakeTimeout(server: { headersTimeout: number }, handshakeTimeoutMs: number): void {
  checkHandshakeTimeout(handshakeTimeoutMs);
  server.headersTimeout = handshakeTimeoutMs;
}

function checkHandshakeTimeout(ms: number): void {
  if (!(Number.isInteger(ms) && ms >= 1 && ms <= MAX_TIMER_MS)) {
    throw new RangeError(`handshakeTimeoutMs ${ms} must be an integer in 1..${MAX_TIMER_MS}`);
  }
}
