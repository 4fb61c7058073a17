/**
 * Who may open a session, checked before the WebSocket upgrade: static bearer tokens and JWTs, each naming the
 * routes it allows. Also where a credential is found in an upgrade request (three carriers) and how it is kept
 * out of logs. docs/SECURITY.md explains the choices.
 */
import { createHash, createPublicKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  createLocalJWKSet,
  decodeProtectedHeader,
  errors as joseErrors,
  importSPKI,
  jwtVerify,
  type CryptoKey,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyOptions,
} from 'jose';
import { z } from 'zod';
import { BEARER_SUBPROTOCOL_PREFIX, MAX_AGENT_SERVICES, ROUTE_NAME_PATTERN } from '../shared/constants.js';
import { SockgateError } from '../shared/errors.js';

/** The JWS algorithms sockgate verifies. HS256 needs `jwt.secret`; the others a public key or the JWKS file. */
export const JWT_ALGORITHMS = ['HS256', 'RS256', 'PS256', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];
const ASYMMETRIC: readonly JwtAlgorithm[] = JWT_ALGORITHMS.filter((a) => a !== 'HS256');

/** Shortest static token, in characters: 16 random base64 characters are 96 bits, out of reach of guessing. */
export const MIN_TOKEN_CHARS = 16;
/** Shortest `jwt.secret`, in bytes: RFC 7518 3.2 requires an HS256 key of at least 256 bits. */
export const MIN_JWT_SECRET_BYTES = 32;
/** Longest credential looked at, in characters; a longer one is refused before hashing or parsing it. */
export const MAX_CREDENTIAL_CHARS = 8192;
/** The subprotocol prefix of the third carrier: `sockgate.bearer.<base64url(token)>`. */
/** PROTOCOL 1.2: the credential subprotocol's prefix (one definition, in shared/, for the SDK too). */
export const BEARER_PROTOCOL_PREFIX = BEARER_SUBPROTOCOL_PREFIX;

// RFC 6750 b64token: what a static token may contain so that it fits all three carriers unchanged.
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

const routesSchema = z
  .array(z.string())
  .min(1)
  .superRefine((routes, ctx) => {
    routes.forEach((r, i) => {
      if (r === '*') {
        if (routes.length > 1) ctx.addIssue({ code: 'custom', path: [i], message: "'*' must be the only entry" });
      } else if (!ROUTE_NAME_PATTERN.test(r)) {
        ctx.addIssue({ code: 'custom', path: [i], message: 'not a route name (A-Z a-z 0-9 . _ -, 1 to 255)' });
      }
    });
  });

/** The secret of a static credential: the token itself, or its SHA-256 so the config file need not hold it. */
const credentialFields = {
  /** Shown in logs as the principal; never the token. */
  name: z.string().min(1).max(128),
  token: z
    .string()
    .min(MIN_TOKEN_CHARS)
    .max(MAX_CREDENTIAL_CHARS)
    .regex(B64TOKEN, 'may hold only A-Z a-z 0-9 - . _ ~ + / and trailing =')
    .optional(),
  /** Hex SHA-256 of the token, so the config file does not hold the token itself. */
  tokenSha256: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex digits (a SHA-256 digest)')
    .optional(),
};

const exactlyOneSecret = [
  (t: { token?: string; tokenSha256?: string }) => (t.token === undefined) !== (t.tokenSha256 === undefined),
  { message: 'give exactly one of token or tokenSha256' },
] as const;

const tokenEntrySchema = z
  .strictObject({ ...credentialFields, routes: routesSchema })
  .refine(...exactlyOneSecret);

/**
 * A reverse-tunnel agent's credential (PROTOCOL 11): a static token and the services it may register. Agent
 * tokens are checked only at `GET /agent`, client tokens only at `/mux` and `/raw`: neither opens the other.
 */
const agentEntrySchema = z
  .strictObject({
    ...credentialFields,
    /** Service names this agent may register; no '*': taking over a service is a privilege to grant by name. */
    services: z
      .array(z.string())
      .min(1)
      .max(MAX_AGENT_SERVICES)
      .superRefine((services, ctx) => {
        services.forEach((s, i) => {
          if (!ROUTE_NAME_PATTERN.test(s)) ctx.addIssue({ code: 'custom', path: [i], message: 'not a service name (A-Z a-z 0-9 . _ -, 1 to 255)' });
          else if (services.indexOf(s) !== i) ctx.addIssue({ code: 'custom', path: [i], message: `${JSON.stringify(s)} is listed twice` });
        });
      }),
  })
  .refine(...exactlyOneSecret);

const jwtSchema = z
  .strictObject({
    /** HS256 shared secret (UTF-8 bytes). */
    secret: z
      .string()
      .refine((s) => Buffer.byteLength(s) >= MIN_JWT_SECRET_BYTES, {
        message: `must be at least ${MIN_JWT_SECRET_BYTES} bytes (RFC 7518 3.2)`,
      })
      .optional(),
    /** SPKI PEM public keys (RSA >= 2048 bits, EC P-256/384/521, Ed25519). */
    publicKeys: z.array(z.string()).min(1).optional(),
    /** Path of a local JWKS JSON file (`{ "keys": [...] }`, public keys only); read once at start. */
    jwksFile: z.string().min(1).optional(),
    /** Accepted `alg` values; default: every algorithm a configured key can verify. */
    algorithms: z.array(z.enum(JWT_ALGORITHMS)).min(1).optional(),
    issuer: z.string().min(1).optional(),
    audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    /** Allowed clock skew for exp/nbf/iat, in seconds. */
    clockToleranceSec: z.number().int().min(0).max(300).default(30),
    /** Claim holding the allowed routes: an array of route names, or '*'. */
    routesClaim: z.string().min(1).default('routes'),
    /** Claim naming the principal in logs. */
    nameClaim: z.literal('sub').default('sub'),
  })
  .refine((j) => j.secret !== undefined || j.publicKeys !== undefined || j.jwksFile !== undefined, {
    message: 'give at least one key source: secret, publicKeys or jwksFile',
  });

/** The `auth` config key. Unknown keys are rejected. Embed as `auth: authConfigSchema.optional()`. */
export const authConfigSchema = z
  .strictObject({
    tokens: z.array(tokenEntrySchema).optional(),
    jwt: jwtSchema.optional(),
    /** Reverse-tunnel agents (PROTOCOL 11), checked at `GET /agent` only. */
    agents: z.array(agentEntrySchema).optional(),
  })
  .superRefine((auth, ctx) => {
    // The same token twice would make its routes depend on the order of the list; one token as both a client and
    // an agent credential would let whoever holds it do both.
    const seen = new Map<string, string>();
    const check = (list: 'tokens' | 'agents', i: number, t: { token?: string | undefined; tokenSha256?: string | undefined }): void => {
      const hex = t.token !== undefined ? sha256(t.token).toString('hex') : t.tokenSha256?.toLowerCase();
      if (hex === undefined) return;
      const first = seen.get(hex);
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: [list, i], message: `same token as ${first}` });
      else seen.set(hex, `${list}[${i}]`);
    };
    auth.tokens?.forEach((t, i) => check('tokens', i, t));
    auth.agents?.forEach((t, i) => check('agents', i, t));
  });

export type AuthConfig = z.output<typeof authConfigSchema>;
export type AuthConfigInput = z.input<typeof authConfigSchema>;

/** Who a session belongs to. */
export interface Principal {
  /** For logs: the token entry's name, the JWT's `sub`, or 'anonymous'. */
  readonly name: string;
  readonly kind: 'token' | 'jwt' | 'anonymous';
  /** Whether this principal may open the route (checked on every OPEN and raw upgrade). */
  allows(route: string): boolean;
  /** When the credential expires, in milliseconds since the epoch (JWT `exp`); absent for static tokens. */
  readonly expiresAt?: number;
}

export interface Authenticator {
  /** False when neither tokens nor jwt are configured. */
  readonly configured: boolean;
  readonly allowAnonymous: boolean;
  /**
   * The principal for a credential (undefined: none presented). Never resolves undefined: without a
   * credential it gives the anonymous principal when allowed. Rejects with SockgateError
   * SOCKGATE_ERR_AUTH_MISSING, SOCKGATE_ERR_AUTH_INVALID or SOCKGATE_ERR_AUTH_EXPIRED (each HTTP 401).
   */
  authenticate(credential: string | undefined): Promise<Principal>;
}

export interface AuthenticatorOptions {
  /** Accept requests with no credential as the anonymous principal, which may open every route. */
  allowAnonymous?: boolean;
}

const ANONYMOUS: Principal = Object.freeze({ name: 'anonymous', kind: 'anonymous', allows: () => true });

interface TokenEntry {
  readonly digest: Buffer;
  readonly principal: Principal;
}

/** One way to check a JWT signature: a key (or key set) and the algorithms it serves. */
interface Verifier {
  readonly algs: ReadonlySet<string>;
  verify(token: string, options: JWTVerifyOptions): Promise<JWTPayload>;
}

/**
 * Build the authenticator from the `auth` config (raw or already parsed by authConfigSchema). Async because it
 * reads the JWKS file and imports the keys, so every key problem is a start-up error. Throws
 * SOCKGATE_ERR_CONFIG_INVALID naming the key (`auth.jwt.publicKeys[1]: ...`).
 */
export async function createAuthenticator(
  auth: AuthConfigInput | undefined,
  options: AuthenticatorOptions = {},
): Promise<Authenticator> {
  const allowAnonymous = options.allowAnonymous === true;
  const parsed = authConfigSchema.safeParse(auth ?? {});
  if (!parsed.success) throw configError(parsed.error);
  const cfg = parsed.data;

  const tokens: TokenEntry[] = (cfg.tokens ?? []).map((t) => ({
    digest: t.token !== undefined ? sha256(t.token) : Buffer.from(t.tokenSha256!, 'hex'),
    principal: Object.freeze({ name: t.name, kind: 'token' as const, allows: routeMatcher(t.routes) }),
  }));
  const jwt = cfg.jwt ? await createJwtVerifier(cfg.jwt) : undefined;
  const configured = tokens.length > 0 || jwt !== undefined;

  async function authenticate(credential: string | undefined): Promise<Principal> {
    if (credential === undefined) {
      if (allowAnonymous) return ANONYMOUS;
      throw new SockgateError('SOCKGATE_ERR_AUTH_MISSING', 'present a bearer token');
    }
    if (!configured) throw new SockgateError('SOCKGATE_ERR_AUTH_INVALID', 'this gateway has no credentials configured');
    if (credential.length === 0 || credential.length > MAX_CREDENTIAL_CHARS) {
      throw new SockgateError('SOCKGATE_ERR_AUTH_INVALID', `a credential is 1 to ${MAX_CREDENTIAL_CHARS} characters`);
    }
    if (tokens.length > 0) {
      // Compare against every entry, without stopping at a match, so timing tells nothing about which.
      const digest = sha256(credential);
      let match: TokenEntry | undefined;
      for (const entry of tokens) {
        const equal = timingSafeEqual(digest, entry.digest);
        match = equal ? entry : match;
      }
      if (match) return match.principal;
    }
    if (jwt && JWS_COMPACT.test(credential)) return jwt(credential);
    throw new SockgateError('SOCKGATE_ERR_AUTH_INVALID', 'unknown token');
  }

  return { configured, allowAnonymous, authenticate };
}

/** A reverse-tunnel agent, authenticated by its agent token (PROTOCOL 11.2). */
export interface AgentPrincipal {
  /** For logs: the agent entry's name. */
  readonly name: string;
  readonly kind: 'agent';
  /** Whether this agent may register the service. */
  allows(service: string): boolean;
}

export interface AgentAuthenticator {
  /** False when `auth.agents` is absent or empty: every agent is refused. */
  readonly configured: boolean;
  /**
   * The agent for a credential. Throws SockgateError SOCKGATE_ERR_AUTH_MISSING (none presented: there are no
   * anonymous agents) or SOCKGATE_ERR_AUTH_INVALID (each HTTP 401).
   */
  authenticate(credential: string | undefined): AgentPrincipal;
}

/** Build the agent authenticator from the `auth` config. Throws SOCKGATE_ERR_CONFIG_INVALID naming the key. */
export function createAgentAuthenticator(auth: AuthConfigInput | undefined): AgentAuthenticator {
  const parsed = authConfigSchema.safeParse(auth ?? {});
  if (!parsed.success) throw configError(parsed.error);
  const entries = (parsed.data.agents ?? []).map((a) => {
    const services = new Set(a.services);
    return {
      digest: a.token !== undefined ? sha256(a.token) : Buffer.from(a.tokenSha256!, 'hex'),
      principal: Object.freeze({ name: a.name, kind: 'agent' as const, allows: (s: string) => services.has(s) }) as AgentPrincipal,
    };
  });
  return {
    configured: entries.length > 0,
    authenticate(credential) {
      if (credential === undefined) throw new SockgateError('SOCKGATE_ERR_AUTH_MISSING', 'an agent presents its agent token');
      if (entries.length === 0) throw new SockgateError('SOCKGATE_ERR_AUTH_INVALID', 'this gateway has no agent credentials configured (auth.agents)');
      if (credential.length === 0 || credential.length > MAX_CREDENTIAL_CHARS) {
        throw new SockgateError('SOCKGATE_ERR_AUTH_INVALID', `a credential is 1 to ${MAX_CREDENTIAL_CHARS} characters`);
      }
      // As for client tokens: compare against every entry, with no early exit.
      const digest = sha256(credential);
      let match: AgentPrincipal | undefined;
      for (const entry of entries) {
        const equal = timingSafeEqual(digest, entry.digest);
        match = equal ? entry.principal : match;
      }
      if (!match) throw new SockgateError('SOCKGATE_ERR_AUTH_INVALID', 'unknown agent token');
      return match;
    },
  };
}

const JWS_COMPACT = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

type JwtConfig = NonNullable<AuthConfig['jwt']>;

async function createJwtVerifier(cfg: JwtConfig): Promise<(token: string) => Promise<Principal>> {
  const bad = (key: string, why: string, cause?: unknown): never => {
    throw new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', `auth.jwt.${key}: ${why}`, { cause });
  };
  const listed = cfg.algorithms ? new Set<string>(cfg.algorithms) : undefined;
  const verifiers: Verifier[] = [];

  if (cfg.secret !== undefined) {
    if (listed && !listed.has('HS256')) bad('secret', 'set, but algorithms does not list HS256');
    const key = new TextEncoder().encode(cfg.secret);
    verifiers.push({ algs: new Set(['HS256']), verify: async (t, o) => (await jwtVerify(t, key, o)).payload });
  }

  for (const [i, pem] of (cfg.publicKeys ?? []).entries()) {
    const where = `publicKeys[${i}]`;
    if (/PRIVATE KEY/.test(pem)) bad(where, 'is a private key; give the public key (BEGIN PUBLIC KEY)');
    if (!/-----BEGIN PUBLIC KEY-----/.test(pem)) bad(where, 'expected an SPKI PEM (-----BEGIN PUBLIC KEY-----)');
    let keyObject: KeyObject;
    try {
      keyObject = createPublicKey(pem);
    } catch (err) {
      return bad(where, 'not a readable PEM public key', err);
    }
    const supported = algorithmsForKey(keyObject);
    if (supported.length === 0) bad(where, `key type ${describeKey(keyObject)} is not supported (RSA, EC P-256/384/521, Ed25519)`);
    const modulus = keyObject.asymmetricKeyDetails?.modulusLength;
    if (modulus !== undefined && modulus < 2048) bad(where, `RSA key of ${modulus} bits; at least 2048 are required`);
    const algs = listed ? supported.filter((a) => listed.has(a)) : supported;
    if (algs.length === 0) bad(where, `a ${describeKey(keyObject)} key verifies none of the listed algorithms (it takes ${supported.join(', ')})`);
    for (const alg of algs) {
      let key: CryptoKey;
      try {
        key = await importSPKI(pem, alg);
      } catch (err) {
        return bad(where, `cannot be imported for ${alg}`, err);
      }
      verifiers.push({ algs: new Set([alg]), verify: async (t, o) => (await jwtVerify(t, key, o)).payload });
    }
  }

  if (cfg.jwksFile !== undefined) {
    const jwks = await loadJwks(cfg.jwksFile, bad);
    const getKey = createLocalJWKSet(jwks);
    const algs = ASYMMETRIC.filter((a) => !listed || listed.has(a));
    if (algs.length === 0) bad('jwksFile', 'set, but algorithms lists no public-key algorithm');
    verifiers.push({
      algs: new Set(algs),
      async verify(t, o) {
        try {
          return (await jwtVerify(t, getKey, o)).payload;
        } catch (err) {
          // Several keys match the header (no kid): try each, as jose documents.
          if (!(err instanceof joseErrors.JWKSMultipleMatchingKeys)) throw err;
          for await (const key of err) {
            try {
              return (await jwtVerify(t, key, o)).payload;
            } catch (inner) {
              if (!isSignatureMismatch(inner)) throw inner;
            }
          }
          throw new joseErrors.JWSSignatureVerificationFailed();
        }
      },
    });
  }

  const allowed = new Set<string>(listed ?? verifiers.flatMap((v) => [...v.algs]));
  for (const alg of listed ?? []) {
    if (!verifiers.some((v) => v.algs.has(alg))) bad('algorithms', `lists ${alg}, but no configured key can verify it`);
  }

  const verifyOptions: JWTVerifyOptions = {
    algorithms: [...allowed],
    clockTolerance: cfg.clockToleranceSec,
    // A JWT without exp would be valid forever.
    requiredClaims: ['exp'],
    ...(cfg.issuer !== undefined && { issuer: cfg.issuer }),
    ...(cfg.audience !== undefined && { audience: cfg.audience }),
  };
  const routesClaim = cfg.routesClaim;
  const nameClaim = cfg.nameClaim;

  return async (token) => {
    let alg: unknown;
    try {
      alg = decodeProtectedHeader(token).alg;
    } catch (err) {
      // jose throws a plain TypeError for a header that is not base64url JSON: the client's fault, not ours.
      throw new SockgateError('SOCKGATE_ERR_AUTH_INVALID', 'malformed JWT header', { cause: err });
    }
    if (typeof alg !== 'string' || !allowed.has(alg)) {
      throw new SockgateError('SOCKGATE_ERR_AUTH_INVALID', `JWT alg ${JSON.stringify(alg)} is not accepted`);
    }
    let payload: JWTPayload | undefined;
    let lastError: unknown;
    for (const v of verifiers) {
      if (!v.algs.has(alg)) continue;
      try {
        payload = await v.verify(token, verifyOptions);
        break;
      } catch (err) {
        // A bad signature may only mean another key signed it; a claim failure means the signature was good.
        if (!isSignatureMismatch(err)) throw fromJose(err);
        lastError = err;
      }
    }
    if (!payload) throw fromJose(lastError);

    const name = payload[nameClaim];
    if (typeof name !== 'string' || name.length === 0) {
      throw new SockgateError('SOCKGATE_ERR_AUTH_INVALID', `the JWT has no "${nameClaim}" claim`);
    }
    const routes = payload[routesClaim];
    const valid =
      routes === '*' || (Array.isArray(routes) && routes.length > 0 && routes.every((r) => typeof r === 'string'));
    if (!valid) {
      throw new SockgateError('SOCKGATE_ERR_AUTH_INVALID', `the JWT's "${routesClaim}" claim must be "*" or an array of route names`);
    }
    return {
      name,
      kind: 'jwt',
      allows: routeMatcher(routes === '*' ? ['*'] : (routes as string[])),
      expiresAt: payload.exp! * 1000,
    };
  };
}

async function loadJwks(path: string, bad: (key: string, why: string, cause?: unknown) => never): Promise<JSONWebKeySet> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch (err) {
    const why = err instanceof SyntaxError ? 'not valid JSON' : `cannot read ${path}`;
    return bad('jwksFile', `${why}: ${(err as Error).message}`, err);
  }
  const keys = (json as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys) || keys.length === 0) return bad('jwksFile', 'expected { "keys": [ ... ] } with at least one key');
  keys.forEach((k: unknown, i) => {
    const jwk = k as Record<string, unknown> | null;
    if (typeof jwk !== 'object' || jwk === null || typeof jwk.kty !== 'string') bad('jwksFile', `keys[${i}] has no "kty"`);
    if ('d' in jwk! || jwk!.kty === 'oct') bad('jwksFile', `keys[${i}] is a private or secret key; the file must hold public keys only`);
  });
  try {
    createLocalJWKSet(json as JSONWebKeySet);
  } catch (err) {
    return bad('jwksFile', `not a JSON Web Key Set: ${(err as Error).message}`, err);
  }
  return json as JSONWebKeySet;
}

function algorithmsForKey(key: KeyObject): JwtAlgorithm[] {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return ['RS256', 'PS256'];
    case 'ec':
      switch (key.asymmetricKeyDetails?.namedCurve) {
        case 'prime256v1':
          return ['ES256'];
        case 'secp384r1':
          return ['ES384'];
        case 'secp521r1':
          return ['ES512'];
        default:
          return [];
      }
    case 'ed25519':
      return ['EdDSA', 'Ed25519'];
    default:
      return [];
  }
}

function describeKey(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return `${key.asymmetricKeyType ?? 'unknown'}${curve ? ` ${curve}` : ''}`;
}

function isSignatureMismatch(err: unknown): boolean {
  return err instanceof joseErrors.JWSSignatureVerificationFailed || err instanceof joseErrors.JWKSNoMatchingKey;
}

/** jose's error as ours: JWTExpired is AUTH_EXPIRED, any other jose error AUTH_INVALID, anything else a bug. */
function fromJose(err: unknown): SockgateError {
  if (!(err instanceof joseErrors.JOSEError)) {
    return new SockgateError('SOCKGATE_ERR_INTERNAL', 'JWT verification failed unexpectedly', { cause: err });
  }
  switch (err.code) {
    case 'ERR_JWT_EXPIRED':
      return new SockgateError('SOCKGATE_ERR_AUTH_EXPIRED', err.message, { cause: err });
    default:
      return new SockgateError('SOCKGATE_ERR_AUTH_INVALID', err.message, { cause: err });
  }
}

function routeMatcher(routes: readonly string[]): (route: string) => boolean {
  if (routes.includes('*')) return () => true;
  const set = new Set(routes);
  return (route) => set.has(route);
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function configError(error: z.ZodError): SockgateError {
  const issue = error.issues[0]!;
  let path = 'auth';
  for (const p of issue.path) path += typeof p === 'number' ? `[${p}]` : `.${String(p)}`;
  return new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', `${path}: ${issue.message}`, { cause: error });
}

// ---------------------------------------------------------------------------------------------------------------
// Carriers

export interface CredentialRequest {
  /** Node's request headers (lower-case names). */
  readonly headers: Record<string, string | string[] | undefined>;
  /** The request target, e.g. `/mux?access_token=...`. */
  readonly url: string;
}

export interface ExtractedCredential {
  readonly token: string | undefined;
  readonly source: 'header' | 'query' | 'protocol' | undefined;
  /** The offered subprotocol that carried the token: never select it (see isBearerProtocol). */
  readonly protocolToStrip?: string;
}

const NONE: ExtractedCredential = Object.freeze({ token: undefined, source: undefined });

/**
 * Find the credential in an upgrade request. Three carriers: `Authorization: Bearer <t>`, the query parameter
 * `access_token` (RFC 6750 2.3), and an extra offered subprotocol `sockgate.bearer.<base64url(t)>` (a browser
 * cannot set headers on a WebSocket). Authorization schemes other than Bearer are ignored. Throws
 * SOCKGATE_ERR_AUTH_INVALID for a malformed carrier, or for credentials in more than one carrier or twice in
 * one: which one counts must never depend on the order of checks.
 */
export function extractCredential(req: CredentialRequest): ExtractedCredential {
  const found: ExtractedCredential[] = [];

  const authorization = headerValue(req.headers, 'authorization');
  if (authorization !== undefined) {
    if (Array.isArray(authorization)) throw invalid('more than one Authorization header');
    const m = /^([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)(?:[ \t]+(.*))?$/.exec(authorization.trim());
    if (m && m[1]!.toLowerCase() === 'bearer') {
      const token = m[2]?.trim();
      if (!token || /\s/.test(token)) throw invalid('malformed Authorization: Bearer header');
      found.push({ token, source: 'header' });
    }
  }

  const q = req.url.indexOf('?');
  if (q >= 0) {
    const hash = req.url.indexOf('#', q);
    const params = new URLSearchParams(req.url.slice(q + 1, hash < 0 ? undefined : hash));
    const values = params.getAll('access_token');
    if (values.length > 1) throw invalid('access_token given more than once');
    if (values.length === 1) {
      if (values[0] === '') throw invalid('empty access_token');
      found.push({ token: values[0], source: 'query' });
    }
  }

  const protocols = headerValue(req.headers, 'sec-websocket-protocol');
  if (protocols !== undefined) {
    const offered = (Array.isArray(protocols) ? protocols.join(',') : protocols).split(',').map((p) => p.trim());
    const bearer = offered.filter(isBearerProtocol);
    if (bearer.length > 1) throw invalid(`more than one ${BEARER_PROTOCOL_PREFIX}* subprotocol`);
    if (bearer.length === 1) {
      const protocol = bearer[0]!;
      found.push({ token: decodeBearerProtocol(protocol), source: 'protocol', protocolToStrip: protocol });
    }
  }

  if (found.length > 1) throw invalid(`credentials in more than one place (${found.map((f) => f.source).join(', ')})`);
  return found[0] ?? NONE;
}

/** True for the credential-carrying subprotocol: handleProtocols must skip it and select `sockgate.v1`. */
export function isBearerProtocol(protocol: string): boolean {
  return protocol.startsWith(BEARER_PROTOCOL_PREFIX);
}

/** The subprotocol that carries `token` (what a browser client adds to its offered protocols). */
export function bearerProtocol(token: string): string {
  return BEARER_PROTOCOL_PREFIX + Buffer.from(token, 'utf8').toString('base64url');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeBearerProtocol(protocol: string): string {
  const encoded = protocol.slice(BEARER_PROTOCOL_PREFIX.length);
  const bytes = Buffer.from(encoded, 'base64url');
  // Buffer skips bad characters silently; a round trip catches them and any non-canonical encoding.
  if (encoded.length === 0 || bytes.toString('base64url') !== encoded) throw invalid(`malformed ${BEARER_PROTOCOL_PREFIX}* subprotocol`);
  try {
    return utf8.decode(bytes);
  } catch {
    throw invalid(`${BEARER_PROTOCOL_PREFIX}* subprotocol is not UTF-8`);
  }
}

function invalid(detail: string): SockgateError {
  return new SockgateError('SOCKGATE_ERR_AUTH_INVALID', detail);
}

function headerValue(headers: CredentialRequest['headers'], name: string): string | string[] | undefined {
  const v = headers[name];
  if (v !== undefined) return v;
  for (const key of Object.keys(headers)) if (key.toLowerCase() === name) return headers[key];
  return undefined;
}

/**
 * The `WWW-Authenticate` value for a 401 (RFC 6750 3): tells a client to present a bearer token, and whether the
 * one it sent was refused.
 */
export function bearerChallenge(err: SockgateError): string {
  return err.code === 'SOCKGATE_ERR_AUTH_MISSING' ? 'Bearer realm="sockgate"' : 'Bearer realm="sockgate", error="invalid_token"';
}

// ---------------------------------------------------------------------------------------------------------------
// Redaction (pino serializers)

export const REDACTED = '[REDACTED]';

/** The URL with every access_token value replaced by [REDACTED] (any case, any encoding of the name). Never throws. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const hash = url.indexOf('#', q);
  const end = hash < 0 ? url.length : hash;
  const pairs = url.slice(q + 1, end).split('&');
  let changed = false;
  for (let i = 0; i < pairs.length; i++) {
    const pair = pairs[i]!;
    const eq = pair.indexOf('=');
    const rawName = eq < 0 ? pair : pair.slice(0, eq);
    // Decode the name as URLSearchParams does, so `access%5Ftoken` is caught too.
    const name = new URLSearchParams(`${rawName}=`).keys().next().value ?? '';
    if (name.toLowerCase() === 'access_token') {
      pairs[i] = `${rawName}=${REDACTED}`;
      changed = true;
    }
  }
  return changed ? `${url.slice(0, q + 1)}${pairs.join('&')}${url.slice(end)}` : url;
}

/**
 * A copy of the headers with credentials redacted: `authorization` and `proxy-authorization` keep only their
 * scheme, `cookie` is dropped to [REDACTED], and `sockgate.bearer.*` entries of `sec-websocket-protocol` lose
 * their token. Other headers are kept as they are.
 */
export function redactHeaders<H extends Record<string, string | string[] | number | undefined>>(headers: H): H {
  const out: Record<string, unknown> = { ...headers };
  for (const key of Object.keys(out)) {
    const value = out[key];
    if (value === undefined) continue;
    switch (key.toLowerCase()) {
      case 'authorization':
      case 'proxy-authorization':
        out[key] = mapValue(value, (v) => {
          const scheme = /^\s*([A-Za-z][^\s]*)\s/.exec(v)?.[1];
          return scheme ? `${scheme} ${REDACTED}` : REDACTED;
        });
        break;
      case 'cookie':
        out[key] = REDACTED;
        break;
      case 'sec-websocket-protocol':
        out[key] = mapValue(value, (v) =>
          v
            .split(',')
            .map((p) => (isBearerProtocol(p.trim()) ? `${p.slice(0, p.indexOf(BEARER_PROTOCOL_PREFIX))}${BEARER_PROTOCOL_PREFIX}${REDACTED}` : p))
            .join(','),
        );
        break;
    }
  }
  return out as H;
}

function mapValue(value: unknown, f: (v: string) => string): unknown {
  if (Array.isArray(value)) return value.map((v) => f(String(v)));
  return f(String(value));
}
