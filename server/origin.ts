/**
 * Which web pages may open sessions: the browser's `Origin` header checked before the upgrade, against the
 * gateway's own origin and a configured list. This is what stops cross-site WebSocket hijacking: WebSockets are
 * not covered by CORS, so any page can try to connect, and only the gateway can say no. Non-browser clients
 * send no Origin and are left to the credential check. docs/SECURITY.md explains the rules.
 */
import { isIP } from 'node:net';
import { SockgateError } from '../shared/errors.js';

export interface OriginPolicyOptions {
  /**
   * Origins allowed besides the gateway's own. Each entry is one of:
   * - an exact origin, `https://app.example.com` or `http://localhost:3000` (scheme, host and port compared after
   *   URL normalisation: case folded, default port elided, one trailing slash ignored);
   * - `https://*.example.com` (optionally with a port): any host one or more labels under example.com, with that
   *   scheme and port; never example.com itself, nor evil-example.com; the part after `*.` needs two labels;
   * - `null`: the opaque origin of sandboxed iframes and file: pages (allow only if you mean it);
   * - `*`: any origin at all. UNSAFE: any web page can then use the visitor's network position, and with
   *   anonymous access on, reach every route.
   */
  readonly origins?: readonly string[];
  /**
   * Trust `X-Forwarded-Proto` for the gateway's own scheme. Set it only behind a reverse proxy that overwrites
   * that header; otherwise a client could pick the scheme. The proxy must also pass `Host` through.
   */
  readonly trustProxy?: boolean;
  /**
   * Host names (no port) the `Host` header may carry, or `*.example.com`; absent: any. Set it when anonymous
   * access is on: it defeats DNS rebinding, where a page at attacker.example resolves its name to the gateway
   * and so looks same-origin. `LOOPBACK_HOSTS` suits a gateway on loopback.
   */
  readonly allowedHosts?: readonly string[];
}

export interface OriginRequest {
  readonly headers: Record<string, string | string[] | undefined>;
  /** The connection to the gateway is TLS (e.g. `request.socket.encrypted`): the own origin is https. */
  readonly isTls?: boolean;
}

export type OriginCheck = { readonly ok: true } | { readonly ok: false; readonly error: SockgateError };

export interface OriginPolicy {
  /** Allowed when there is no Origin, when it is the gateway's own, or when it is listed. */
  check(req: OriginRequest): OriginCheck;
  /** The list holds `*`. */
  readonly allowsAnyOrigin: boolean;
}

/** Host names that always mean this machine. */
export const LOOPBACK_HOSTS: readonly string[] = Object.freeze(['localhost', '127.0.0.1', '[::1]']);

interface ParsedOrigin {
  /** Normalised `scheme://host[:port]`. */
  readonly origin: string;
  readonly scheme: string;
  readonly hostname: string;
  /** '' for the scheme's default port. */
  readonly port: string;
}

interface Wildcard {
  readonly scheme: string;
  /** `.example.com`: a host matches when it ends with this and has at least one label before it. */
  readonly suffix: string;
  readonly port: string;
}

const OK: OriginCheck = Object.freeze({ ok: true });

/**
 * Build the policy; the lists are checked up front. Throws SOCKGATE_ERR_CONFIG_INVALID naming the bad entry
 * (`origins[2] "https://*example.com": ...`).
 */
export function createOriginPolicy(options: OriginPolicyOptions): OriginPolicy {
  const exact = new Set<string>();
  const wildcards: Wildcard[] = [];
  let any = false;
  let allowNull = false;

  (options.origins ?? []).forEach((entry, i) => {
    const bad = (why: string): never => {
      throw new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', `origins[${i}] ${JSON.stringify(entry)}: ${why}`);
    };
    if (typeof entry !== 'string') return bad('must be a string');
    if (entry === '*') any = true;
    else if (entry === 'null') allowNull = true;
    else if (entry.includes('*')) wildcards.push(parseWildcard(entry, bad));
    else {
      const parsed = parseOrigin(entry);
      if (!parsed) return bad('expected scheme://host[:port] with no path, e.g. https://app.example.com');
      exact.add(parsed.origin);
    }
  });

  const hostRules = options.allowedHosts?.map((entry, i) => parseHostRule(entry, i));
  const trustProxy = options.trustProxy === true;

  function check(req: OriginRequest): OriginCheck {
    const host = header(req.headers, 'host');
    if (hostRules) {
      const hostname = typeof host === 'string' ? parseHost(host)?.hostname : undefined;
      if (hostname === undefined || !hostRules.some((rule) => rule(hostname))) {
        return refuse(`Host ${quote(host)} is not in allowedHosts`);
      }
    }

    const value = header(req.headers, 'origin');
    // No Origin: not a browser (browsers always send one on a WebSocket upgrade).
    if (value === undefined) return OK;
    if (typeof value !== 'string') return refuse('more than one Origin header');
    if (any) return OK;
    if (value === 'null') return allowNull ? OK : refuse('Origin "null" (a sandboxed or file: page) is not allowed');

    const origin = parseOrigin(value);
    if (!origin) return refuse(`malformed Origin ${quote(value)}`);
    if (exact.has(origin.origin)) return OK;
    for (const w of wildcards) {
      if (
        origin.scheme === w.scheme &&
        origin.port === w.port &&
        origin.hostname.length > w.suffix.length &&
        origin.hostname.endsWith(w.suffix)
      ) {
        return OK;
      }
    }
    if (typeof host === 'string' && origin.origin === ownOrigin(req, host, trustProxy)) return OK;
    return refuse(`Origin ${quote(value)} is not allowed`);
  }

  return { check, allowsAnyOrigin: any };
}

function refuse(detail: string): OriginCheck {
  return { ok: false, error: new SockgateError('SOCKGATE_ERR_ORIGIN_FORBIDDEN', detail) };
}

/** The gateway's own origin as this request names it, normalised; undefined when the Host is malformed. */
function ownOrigin(req: OriginRequest, host: string, trustProxy: boolean): string | undefined {
  let scheme = req.isTls === true ? 'https' : 'http';
  if (trustProxy) {
    const forwarded = header(req.headers, 'x-forwarded-proto');
    // Several proxies append: the first value is the one the client used.
    const first = (Array.isArray(forwarded) ? forwarded[0] : forwarded)?.split(',')[0]?.trim().toLowerCase();
    if (first === 'http' || first === 'https') scheme = first;
  }
  return parseOrigin(`${scheme}://${host}`)?.origin;
}

/**
 * Normalise `scheme://host[:port]` (one trailing slash allowed; no path, query, fragment or user info). http and
 * https go through the WHATWG URL parser (case folded, IDN to punycode, default port elided); other schemes
 * (`chrome-extension://id`) are compared as lower-cased text.
 */
function parseOrigin(text: string): ParsedOrigin | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#@\s\\]+)\/?$/.exec(text);
  if (!m) return undefined;
  const scheme = m[1]!.toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') {
    const host = m[2]!.toLowerCase();
    return { origin: `${scheme}://${host}`, scheme, hostname: host, port: '' };
  }
  let url: URL;
  try {
    url = new URL(`${scheme}://${m[2]}`);
  } catch {
    return undefined;
  }
  if (url.hostname === '') return undefined;
  return { origin: url.origin, scheme, hostname: url.hostname, port: url.port };
}

function parseWildcard(entry: string, bad: (why: string) => never): Wildcard {
  const m = /^(https?):\/\/\*\.([^/?#@\s\\:*]+)(:\d+)?\/?$/i.exec(entry);
  if (!m) return bad('a wildcard must be the whole first label: https://*.example.com[:port]');
  const parsed = parseOrigin(`${m[1]}://${m[2]}${m[3] ?? ''}`);
  if (!parsed) return bad('not a valid host after "*."');
  if (isIP(parsed.hostname) || parsed.hostname.startsWith('[')) return bad('a wildcard needs a domain name, not an IP address');
  const labels = parsed.hostname.split('.');
  if (labels.length < 2 || labels.some((l) => l === '')) {
    return bad('the part after "*." needs at least two labels (https://*.example.com, not https://*.com)');
  }
  return { scheme: parsed.scheme, suffix: `.${parsed.hostname}`, port: parsed.port };
}

/** `example.com`, `[::1]`, `127.0.0.1` or `*.example.com` -> a matcher on normalised host names. */
function parseHostRule(entry: string, i: number): (hostname: string) => boolean {
  const bad = (why: string): never => {
    throw new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', `allowedHosts[${i}] ${JSON.stringify(entry)}: ${why}`);
  };
  if (typeof entry !== 'string') return bad('must be a string');
  const wildcard = entry.startsWith('*.');
  const parsed = parseHost(wildcard ? entry.slice(2) : entry);
  if (!parsed || /[:/]/.test(entry.replace(/^\[.*\]$/, ''))) {
    return bad('expected a host name or IP address without scheme or port (example.com, *.example.com, [::1])');
  }
  const name = parsed.hostname;
  if (!wildcard) return (hostname) => hostname === name;
  if (!name.includes('.')) bad('the part after "*." needs at least two labels');
  const suffix = `.${name}`;
  return (hostname) => hostname.length > suffix.length && hostname.endsWith(suffix);
}

/** A Host header value -> normalised host name and port, or undefined when malformed. */
function parseHost(host: string): { hostname: string; port: string } | undefined {
  if (!/^[^/?#@\s\\]+$/.test(host)) return undefined;
  try {
    const url = new URL(`http://${host}`);
    return url.hostname === '' ? undefined : { hostname: url.hostname, port: url.port };
  } catch {
    return undefined;
  }
}

function header(headers: OriginRequest['headers'], name: string): string | string[] | undefined {
  const v = headers[name];
  if (v !== undefined) return v;
  for (const key of Object.keys(headers)) if (key.toLowerCase() === name) return headers[key];
  return undefined;
}

/** A header value for an error message: quoted, and cut short so a huge header cannot flood the logs. */
function quote(value: string | string[] | undefined): string {
  if (value === undefined) return '(none)';
  const text = JSON.stringify(value);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}
