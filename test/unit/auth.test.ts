import { createHash, generateKeyPairSync } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { SignJWT, exportJWK, exportPKCS8, exportSPKI, generateKeyPair, importPKCS8, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  BEARER_PROTOCOL_PREFIX,
  authConfigSchema,
  bearerChallenge,
  bearerProtocol,
  createAuthenticator,
  extractCredential,
  isBearerProtocol,
  redactHeaders,
  redactUrl,
  type AuthConfigInput,
} from '../../server/auth.js';
import { SockgateError, type ErrorCode } from '../../shared/errors.js';

const TOKEN_A = 'tok-A-0123456789abcdef';
const TOKEN_B = 'tok-B-0123456789abcdef';
const SECRET = 'an-hs256-secret-of-at-least-32-bytes!!';
const now = () => Math.floor(Date.now() / 1000);

function throwsCode(fn: () => unknown, code: ErrorCode): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(SockgateError);
  expect((caught as SockgateError).code).toBe(code);
}

async function rejects(p: Promise<unknown>, code: ErrorCode): Promise<SockgateError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  expect(caught, `expected ${code}`).toBeInstanceOf(SockgateError);
  expect((caught as SockgateError).code).toBe(code);
  return caught as SockgateError;
}

function jwt(claims: Record<string, unknown> = {}, opts: { sub?: string | null; exp?: number | null; alg?: string; kid?: string } = {}) {
  const j = new SignJWT({ routes: ['ssh'], ...claims }).setProtectedHeader({ alg: opts.alg ?? 'HS256', ...(opts.kid && { kid: opts.kid }) });
  if (opts.sub !== null) j.setSubject(opts.sub ?? 'alice');
  if (opts.exp !== null) j.setExpirationTime(opts.exp ?? now() + 300);
  return j;
}
const hs = (claims?: Record<string, unknown>, opts?: Parameters<typeof jwt>[1]) =>
  jwt(claims, opts).sign(new TextEncoder().encode(SECRET));

describe('authConfigSchema and createAuthenticator: config checked up front', () => {
  const cases: [string, unknown, RegExp][] = [
    ['both token and tokenSha256', { tokens: [{ name: 'a', token: TOKEN_A, tokenSha256: 'a'.repeat(64), routes: ['*'] }] }, /auth\.tokens\[0\]: give exactly one/],
    ['neither token nor tokenSha256', { tokens: [{ name: 'a', routes: ['*'] }] }, /auth\.tokens\[0\]: give exactly one/],
    ['a short token', { tokens: [{ name: 'a', token: 'short', routes: ['*'] }] }, /auth\.tokens\[0\]\.token/],
    ['a token with spaces', { tokens: [{ name: 'a', token: 'has a space in it!!', routes: ['*'] }] }, /auth\.tokens\[0\]\.token/],
    ['a bad digest', { tokens: [{ name: 'a', tokenSha256: 'abc', routes: ['*'] }] }, /auth\.tokens\[0\]\.tokenSha256: must be 64 hex/],
    ['an unknown key in a token', { tokens: [{ name: 'a', token: TOKEN_A, routes: ['*'], extra: 1 }] }, /auth\.tokens\[0\]/],
    ['an unknown top-level key', { token: TOKEN_A }, /^invalid configuration: auth/],
    ["'*' mixed with names", { tokens: [{ name: 'a', token: TOKEN_A, routes: ['*', 'ssh'] }] }, /routes\[0\]: '\*' must be the only entry/],
    ['a bad route name', { tokens: [{ name: 'a', token: TOKEN_A, routes: ['ok', 'no spaces'] }] }, /routes\[1\]: not a route name/],
    ['no routes', { tokens: [{ name: 'a', token: TOKEN_A, routes: [] }] }, /auth\.tokens\[0\]\.routes/],
    ['the same token twice', { tokens: [{ name: 'a', token: TOKEN_A, routes: ['*'] }, { name: 'b', tokenSha256: createHash('sha256').update(TOKEN_A).digest('hex').toUpperCase(), routes: ['x'] }] }, /auth\.tokens\[1\]: same token as tokens\[0\]/],
    ['jwt with no key source', { jwt: { issuer: 'me' } }, /auth\.jwt: give at least one key source/],
    ['a short jwt secret', { jwt: { secret: 'too-short' } }, /auth\.jwt\.secret: must be at least 32 bytes/],
    ['an unknown algorithm', { jwt: { secret: SECRET, algorithms: ['none'] } }, /auth\.jwt\.algorithms\[0\]/],
    ['an unknown jwt key', { jwt: { secret: SECRET, audiences: 'x' } }, /auth\.jwt/],
    ['a negative tolerance', { jwt: { secret: SECRET, clockToleranceSec: -1 } }, /auth\.jwt\.clockToleranceSec/],
    ['HS256 not listed with a secret', { jwt: { secret: SECRET, algorithms: ['ES256'] } }, /auth\.jwt\.secret: set, but algorithms does not list HS256/],
    ['a listed algorithm no key verifies', { jwt: { secret: SECRET, algorithms: ['HS256', 'RS256'] } }, /auth\.jwt\.algorithms: lists RS256/],
    ['a public key that is not PEM', { jwt: { publicKeys: ['hello'] } }, /auth\.jwt\.publicKeys\[0\]: expected an SPKI PEM/],
  ];
  for (const [what, config, message] of cases) {
    it(`refuses ${what}`, async () => {
      const err = await rejects(createAuthenticator(config as AuthConfigInput), 'SOCKGATE_ERR_CONFIG_INVALID');
      expect(err.message).toMatch(message);
      expect(err.message).not.toContain(TOKEN_A);
    });
  }

  it('refuses a private key given as a public key, and a weak RSA key', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const err = await rejects(createAuthenticator({ jwt: { publicKeys: [await exportPKCS8(privateKey)] } }), 'SOCKGATE_ERR_CONFIG_INVALID');
    expect(err.message).toMatch(/publicKeys\[0\]: is a private key/);
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect((await rejects(createAuthenticator({ jwt: { publicKeys: [weak] } }), 'SOCKGATE_ERR_CONFIG_INVALID')).message).toMatch(/1024 bits/);
  });

  it('refuses a public key that verifies none of the listed algorithms', async () => {
    const { publicKey } = await generateKeyPair('ES256', { extractable: true });
    const err = await rejects(
      createAuthenticator({ jwt: { publicKeys: [await exportSPKI(publicKey)], algorithms: ['EdDSA'] } }),
      'SOCKGATE_ERR_CONFIG_INVALID',
    );
    expect(err.message).toMatch(/publicKeys\[0\]: a ec prime256v1 key verifies none of the listed algorithms \(it takes ES256\)/);
  });

  it('fills the documented jwt defaults', () => {
    const parsed = authConfigSchema.parse({ jwt: { secret: SECRET } });
    expect(parsed.jwt).toMatchObject({ clockToleranceSec: 30, routesClaim: 'routes', nameClaim: 'sub' });
  });

  it('accepts an already parsed config', async () => {
    const parsed = authConfigSchema.parse({ tokens: [{ name: 'a', token: TOKEN_A, routes: ['ssh'] }], jwt: { secret: SECRET } });
    const auth = await createAuthenticator(parsed);
    expect((await auth.authenticate(TOKEN_A)).name).toBe('a');
  });
});

describe('anonymous and unconfigured', () => {
  it('with no auth configured: missing credential is AUTH_MISSING unless anonymous is allowed', async () => {
    const closed = await createAuthenticator(undefined);
    expect(closed.configured).toBe(false);
    await rejects(closed.authenticate(undefined), 'SOCKGATE_ERR_AUTH_MISSING');

    const open = await createAuthenticator(undefined, { allowAnonymous: true });
    const p = await open.authenticate(undefined);
    expect(p).toMatchObject({ name: 'anonymous', kind: 'anonymous' });
    expect(p.allows('anything')).toBe(true);
    // A credential nobody can check is refused, not silently ignored.
    await rejects(open.authenticate(TOKEN_A), 'SOCKGATE_ERR_AUTH_INVALID');
  });

  it('with auth configured and anonymous allowed, a wrong credential is still refused', async () => {
    const auth = await createAuthenticator({ tokens: [{ name: 'a', token: TOKEN_A, routes: ['ssh'] }] }, { allowAnonymous: true });
    expect(auth.configured).toBe(true);
    expect((await auth.authenticate(undefined)).kind).toBe('anonymous');
    await rejects(auth.authenticate(TOKEN_B), 'SOCKGATE_ERR_AUTH_INVALID');
  });

  it('refuses empty and oversized credentials before looking at them', async () => {
    const auth = await createAuthenticator({ tokens: [{ name: 'a', token: TOKEN_A, routes: ['ssh'] }] });
    await rejects(auth.authenticate(''), 'SOCKGATE_ERR_AUTH_INVALID');
    await rejects(auth.authenticate('x'.repeat(10_000)), 'SOCKGATE_ERR_AUTH_INVALID');
  });
});

describe('static tokens', () => {
  let auth: Awaited<ReturnType<typeof createAuthenticator>>;
  beforeAll(async () => {
    auth = await createAuthenticator({
      tokens: [
        { name: 'ops', token: TOKEN_A, routes: ['ssh', 'vnc'] },
        { name: 'admin', tokenSha256: createHash('sha256').update(TOKEN_B).digest('hex').toUpperCase(), routes: ['*'] },
      ],
    });
  });

  it('a plain token gives its principal and its routes only', async () => {
    const p = await auth.authenticate(TOKEN_A);
    expect(p).toMatchObject({ name: 'ops', kind: 'token' });
    expect(p.expiresAt).toBeUndefined();
    expect(p.allows('ssh')).toBe(true);
    expect(p.allows('vnc')).toBe(true);
    expect(p.allows('db')).toBe(false);
    expect(p.allows('*')).toBe(false);
  });

  it('a sha256 entry (any hex case) matches the token, and * allows every route', async () => {
    const p = await auth.authenticate(TOKEN_B);
    expect(p).toMatchObject({ name: 'admin', kind: 'token' });
    expect(p.allows('db')).toBe(true);
  });

  it('refuses a wrong token, the digest itself, and near misses', async () => {
    for (const wrong of ['tok-C-0123456789abcdef', TOKEN_A.slice(0, -1), `${TOKEN_A} `, createHash('sha256').update(TOKEN_B).digest('hex')]) {
      const err = await rejects(auth.authenticate(wrong), 'SOCKGATE_ERR_AUTH_INVALID');
      expect(err.httpStatus).toBe(401);
      expect(err.message).not.toContain(wrong);
    }
  });
});

describe('JWT', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sockgate-auth-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('HS256', () => {
    let auth: Awaited<ReturnType<typeof createAuthenticator>>;
    beforeAll(async () => {
      auth = await createAuthenticator({ jwt: { secret: SECRET, issuer: 'https://idp.example', audience: ['sockgate', 'other'] } });
    });
    const good = { iss: 'https://idp.example', aud: 'sockgate' };

    it('gives the sub as name, the routes claim as allows, and exp as expiresAt in ms', async () => {
      const exp = now() + 120;
      const p = await auth.authenticate(await hs({ ...good, routes: ['ssh', 'db'] }, { exp }));
      expect(p).toMatchObject({ name: 'alice', kind: 'jwt', expiresAt: exp * 1000 });
      expect(p.allows('ssh')).toBe(true);
      expect(p.allows('db')).toBe(true);
      expect(p.allows('vnc')).toBe(false);
    });

    it('routes "*" (or ["*"]) allows every route', async () => {
      expect((await auth.authenticate(await hs({ ...good, routes: '*' }))).allows('x')).toBe(true);
      expect((await auth.authenticate(await hs({ ...good, routes: ['*'] }))).allows('x')).toBe(true);
    });

    it('refuses a missing or malformed routes claim, and a missing sub', async () => {
      for (const routes of [undefined, [], 'ssh', [1], { ssh: true }]) {
        await rejects(auth.authenticate(await hs({ ...good, routes })), 'SOCKGATE_ERR_AUTH_INVALID');
      }
      await rejects(auth.authenticate(await hs(good, { sub: null })), 'SOCKGATE_ERR_AUTH_INVALID');
    });

    it('an expired token is AUTH_EXPIRED', async () => {
      const err = await rejects(auth.authenticate(await hs(good, { exp: now() - 3600 })), 'SOCKGATE_ERR_AUTH_EXPIRED');
      expect(err.httpStatus).toBe(401);
    });

    it('a token with no exp is refused (it would never expire)', async () => {
      await rejects(auth.authenticate(await hs(good, { exp: null })), 'SOCKGATE_ERR_AUTH_INVALID');
    });

    it('wrong audience, wrong issuer, wrong secret: AUTH_INVALID', async () => {
      await rejects(auth.authenticate(await hs({ ...good, aud: 'someone-else' })), 'SOCKGATE_ERR_AUTH_INVALID');
      await rejects(auth.authenticate(await hs({ ...good, aud: undefined })), 'SOCKGATE_ERR_AUTH_INVALID');
      await rejects(auth.authenticate(await hs({ ...good, iss: 'https://evil.example' })), 'SOCKGATE_ERR_AUTH_INVALID');
      const forged = await jwt(good).sign(new TextEncoder().encode(`${SECRET}x`));
      await rejects(auth.authenticate(forged), 'SOCKGATE_ERR_AUTH_INVALID');
    });

    it('accepts any of several audiences', async () => {
      expect((await auth.authenticate(await hs({ ...good, aud: 'other' }))).name).toBe('alice');
    });

    it('refuses alg none, garbage, and a tampered payload', async () => {
      const token = await hs(good);
      const [, payload] = token.split('.');
      const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${payload}.`;
      await rejects(auth.authenticate(none), 'SOCKGATE_ERR_AUTH_INVALID');
      await rejects(auth.authenticate(`${Buffer.from('{"alg":"none"}').toString('base64url')}.${payload}.x`), 'SOCKGATE_ERR_AUTH_INVALID');
      for (const garbage of ['a.b.c', 'W10.e30.e30', 'e30.e30.e30', `${token}.x`, 'not-a-jwt']) {
        await rejects(auth.authenticate(garbage), 'SOCKGATE_ERR_AUTH_INVALID');
      }
      const tampered = token.split('.');
      tampered[1] = Buffer.from(JSON.stringify({ ...good, sub: 'mallory', routes: '*', exp: now() + 60 })).toString('base64url');
      await rejects(auth.authenticate(tampered.join('.')), 'SOCKGATE_ERR_AUTH_INVALID');
    });
  });

  it('clock tolerance: a token expired within the tolerance passes, beyond it fails', async () => {
    const lenient = await createAuthenticator({ jwt: { secret: SECRET, clockToleranceSec: 30 } });
    const strict = await createAuthenticator({ jwt: { secret: SECRET, clockToleranceSec: 0 } });
    const recentlyExpired = await hs({}, { exp: now() - 10 });
    expect((await lenient.authenticate(recentlyExpired)).name).toBe('alice');
    await rejects(strict.authenticate(recentlyExpired), 'SOCKGATE_ERR_AUTH_EXPIRED');
    await rejects(lenient.authenticate(await hs({}, { exp: now() - 120 })), 'SOCKGATE_ERR_AUTH_EXPIRED');
    // Not valid before: the same tolerance applies the other way.
    expect((await lenient.authenticate(await hs({ nbf: now() + 10 }))).name).toBe('alice');
    await rejects(lenient.authenticate(await hs({ nbf: now() + 120 })), 'SOCKGATE_ERR_AUTH_INVALID');
  });

  it('a custom routes claim', async () => {
    const auth = await createAuthenticator({ jwt: { secret: SECRET, routesClaim: 'https://sockgate/routes' } });
    const p = await auth.authenticate(await hs({ routes: undefined, 'https://sockgate/routes': ['vnc'] }));
    expect(p.allows('vnc')).toBe(true);
    expect(p.allows('ssh')).toBe(false);
    await rejects(auth.authenticate(await hs({ routes: ['vnc'] })), 'SOCKGATE_ERR_AUTH_INVALID');
  });

  for (const alg of ['ES256', 'EdDSA', 'RS256'] as const) {
    it(`${alg} with a PEM public key; another key's signature is refused`, async () => {
      const signer = await generateKeyPair(alg, { extractable: true });
      const other = await generateKeyPair(alg, { extractable: true });
      const auth = await createAuthenticator({ jwt: { publicKeys: [await exportSPKI(signer.publicKey)] } });
      const p = await auth.authenticate(await jwt({}, { alg }).sign(signer.privateKey));
      expect(p).toMatchObject({ name: 'alice', kind: 'jwt' });
      await rejects(auth.authenticate(await jwt({}, { alg }).sign(other.privateKey)), 'SOCKGATE_ERR_AUTH_INVALID');
      await rejects(auth.authenticate(await jwt({}, { alg, exp: now() - 3600 }).sign(signer.privateKey)), 'SOCKGATE_ERR_AUTH_EXPIRED');
    });
  }

  it('several public keys (rotation): a token from any of them verifies', async () => {
    const oldKey = await generateKeyPair('ES256', { extractable: true });
    const newKey = await generateKeyPair('ES256', { extractable: true });
    const ed = await generateKeyPair('EdDSA', { extractable: true });
    const auth = await createAuthenticator({
      jwt: { publicKeys: [await exportSPKI(oldKey.publicKey), await exportSPKI(newKey.publicKey), await exportSPKI(ed.publicKey)] },
    });
    expect((await auth.authenticate(await jwt({}, { alg: 'ES256' }).sign(oldKey.privateKey))).name).toBe('alice');
    expect((await auth.authenticate(await jwt({}, { alg: 'ES256', sub: 'bob' }).sign(newKey.privateKey))).name).toBe('bob');
    expect((await auth.authenticate(await jwt({}, { alg: 'EdDSA', sub: 'eve' }).sign(ed.privateKey))).name).toBe('eve');
  });

  it('refuses an algorithm outside the configured list, and HS256 signed with the public key (alg confusion)', async () => {
    const rsa = await generateKeyPair('RS256', { extractable: true });
    const pem = await exportSPKI(rsa.publicKey);
    const auth = await createAuthenticator({ jwt: { publicKeys: [pem], algorithms: ['RS256'] } });
    expect((await auth.authenticate(await jwt({}, { alg: 'RS256' }).sign(rsa.privateKey))).kind).toBe('jwt');
    const pss = await importPKCS8(await exportPKCS8(rsa.privateKey), 'PS256');
    await rejects(auth.authenticate(await jwt({}, { alg: 'PS256' }).sign(pss)), 'SOCKGATE_ERR_AUTH_INVALID');
    await rejects(auth.authenticate(await jwt({}, { alg: 'HS256' }).sign(new TextEncoder().encode(pem))), 'SOCKGATE_ERR_AUTH_INVALID');
  });

  it('a secret and public keys together: each token is checked by the key its alg names', async () => {
    const ec = await generateKeyPair('ES256', { extractable: true });
    const auth = await createAuthenticator({ jwt: { secret: SECRET, publicKeys: [await exportSPKI(ec.publicKey)] } });
    expect((await auth.authenticate(await hs())).name).toBe('alice');
    expect((await auth.authenticate(await jwt({}, { alg: 'ES256', sub: 'bob' }).sign(ec.privateKey))).name).toBe('bob');
  });

  describe('JWKS file', () => {
    let es: { publicKey: CryptoKey; privateKey: CryptoKey };
    let ed: { publicKey: CryptoKey; privateKey: CryptoKey };
    let es2: { publicKey: CryptoKey; privateKey: CryptoKey };
    let file: string;
    beforeAll(async () => {
      es = await generateKeyPair('ES256', { extractable: true });
      es2 = await generateKeyPair('ES256', { extractable: true });
      ed = await generateKeyPair('EdDSA', { extractable: true });
      file = join(dir, 'jwks.json');
      const keys = [
        { ...(await exportJWK(es.publicKey)), kid: 'es-1', alg: 'ES256', use: 'sig' },
        { ...(await exportJWK(es2.publicKey)), kid: 'es-2', alg: 'ES256' },
        { ...(await exportJWK(ed.publicKey)), kid: 'ed-1' },
      ];
      await writeFile(file, JSON.stringify({ keys }));
    });

    it('verifies tokens by kid, and without a kid when several keys match', async () => {
      const auth = await createAuthenticator({ jwt: { jwksFile: file, audience: 'sockgate' } });
      const a = await auth.authenticate(await jwt({ aud: 'sockgate' }, { alg: 'ES256', kid: 'es-1' }).sign(es.privateKey));
      expect(a.name).toBe('alice');
      const b = await auth.authenticate(await jwt({ aud: 'sockgate' }, { alg: 'ES256', sub: 'bob' }).sign(es2.privateKey));
      expect(b.name).toBe('bob');
      const c = await auth.authenticate(await jwt({ aud: 'sockgate' }, { alg: 'EdDSA', kid: 'ed-1', sub: 'eve' }).sign(ed.privateKey));
      expect(c.name).toBe('eve');
    });

    it('refuses a wrong kid, a foreign key, an expired token and a wrong audience', async () => {
      const auth = await createAuthenticator({ jwt: { jwksFile: file, audience: 'sockgate' } });
      await rejects(auth.authenticate(await jwt({ aud: 'sockgate' }, { alg: 'ES256', kid: 'es-2' }).sign(es.privateKey)), 'SOCKGATE_ERR_AUTH_INVALID');
      await rejects(auth.authenticate(await jwt({ aud: 'sockgate' }, { alg: 'ES256', kid: 'nope' }).sign(es.privateKey)), 'SOCKGATE_ERR_AUTH_INVALID');
      const foreign = await generateKeyPair('ES256');
      await rejects(auth.authenticate(await jwt({ aud: 'sockgate' }, { alg: 'ES256' }).sign(foreign.privateKey)), 'SOCKGATE_ERR_AUTH_INVALID');
      await rejects(
        auth.authenticate(await jwt({ aud: 'sockgate' }, { alg: 'ES256', kid: 'es-1', exp: now() - 3600 }).sign(es.privateKey)),
        'SOCKGATE_ERR_AUTH_EXPIRED',
      );
      await rejects(auth.authenticate(await jwt({ aud: 'x' }, { alg: 'ES256', kid: 'es-1' }).sign(es.privateKey)), 'SOCKGATE_ERR_AUTH_INVALID');
      // HS256 never verifies against a key set.
      await rejects(auth.authenticate(await hs({ aud: 'sockgate' })), 'SOCKGATE_ERR_AUTH_INVALID');
    });

    it('the example config in docs/SECURITY.md is valid', async () => {
      const md = await readFile(new URL('../../docs/SECURITY.md', import.meta.url), 'utf8');
      const example = parseYaml(md.split('```yaml')[1]!.split('```')[0]!) as { auth: { jwt: { jwksFile: string } } };
      example.auth.jwt.jwksFile = file;
      const auth = await createAuthenticator(example.auth as AuthConfigInput);
      const p = await auth.authenticate('e1Xk0vYp3T9Qm2Lr8Zs6Wn4Hb7Jc5Ud0');
      expect(p).toMatchObject({ name: 'ci', kind: 'token' });
      expect(p.allows('anything')).toBe(true);
      const jwtPrincipal = await auth.authenticate(
        await jwt({ iss: 'https://idp.example.com', aud: 'sockgate' }, { alg: 'ES256', kid: 'es-1' }).sign(es.privateKey),
      );
      expect(jwtPrincipal.kind).toBe('jwt');
    });

    it('refuses at start a missing file, bad JSON, an empty set and private keys', async () => {
      const missing = await rejects(createAuthenticator({ jwt: { jwksFile: join(dir, 'nope.json') } }), 'SOCKGATE_ERR_CONFIG_INVALID');
      expect(missing.message).toMatch(/auth\.jwt\.jwksFile: cannot read/);
      const bad = join(dir, 'bad.json');
      await writeFile(bad, '{ not json');
      expect((await rejects(createAuthenticator({ jwt: { jwksFile: bad } }), 'SOCKGATE_ERR_CONFIG_INVALID')).message).toMatch(/not valid JSON/);
      await writeFile(bad, '{"keys": []}');
      expect((await rejects(createAuthenticator({ jwt: { jwksFile: bad } }), 'SOCKGATE_ERR_CONFIG_INVALID')).message).toMatch(/at least one key/);
      await writeFile(bad, JSON.stringify({ keys: [await exportJWK(es.privateKey)] }));
      expect((await rejects(createAuthenticator({ jwt: { jwksFile: bad } }), 'SOCKGATE_ERR_CONFIG_INVALID')).message).toMatch(/keys\[0\] is a private or secret key/);
      await writeFile(bad, JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }));
      await rejects(createAuthenticator({ jwt: { jwksFile: bad } }), 'SOCKGATE_ERR_CONFIG_INVALID');
    });
  });
});

describe('extractCredential', () => {
  const req = (headers: Record<string, string | string[] | undefined>, url = '/mux') => ({ headers, url });

  it('finds nothing when there is nothing', () => {
    expect(extractCredential(req({}))).toEqual({ token: undefined, source: undefined });
    expect(extractCredential(req({ 'sec-websocket-protocol': 'sockgate.v1' }, '/mux?x=1'))).toEqual({ token: undefined, source: undefined });
  });

  it('Authorization: Bearer (scheme in any case); other schemes are not ours', () => {
    expect(extractCredential(req({ authorization: `Bearer ${TOKEN_A}` }))).toEqual({ token: TOKEN_A, source: 'header' });
    expect(extractCredential(req({ authorization: `bearer   ${TOKEN_A} ` }))).toEqual({ token: TOKEN_A, source: 'header' });
    expect(extractCredential(req({ Authorization: `BEARER ${TOKEN_A}` }))).toEqual({ token: TOKEN_A, source: 'header' });
    expect(extractCredential(req({ authorization: 'Basic dXNlcjpwYXNz' }))).toEqual({ token: undefined, source: undefined });
  });

  it('refuses a malformed Bearer header and two Authorization headers', () => {
    for (const authorization of ['Bearer', 'Bearer ', 'Bearer a b']) {
      throwsCode(() => extractCredential(req({ authorization })), 'SOCKGATE_ERR_AUTH_INVALID');
    }
    throwsCode(() => extractCredential(req({ authorization: [`Bearer ${TOKEN_A}`, `Bearer ${TOKEN_B}`] })), 'SOCKGATE_ERR_AUTH_INVALID');
  });

  it('?access_token= (decoded), ignoring a fragment', () => {
    expect(extractCredential(req({}, `/mux?a=1&access_token=${encodeURIComponent('x+y/z=')}&b=2`))).toEqual({ token: 'x+y/z=', source: 'query' });
    expect(extractCredential(req({}, `/raw/ssh?access_token=${TOKEN_A}#frag`))).toEqual({ token: TOKEN_A, source: 'query' });
    expect(() => extractCredential(req({}, '/mux?access_token='))).toThrow(SockgateError);
    expect(() => extractCredential(req({}, `/mux?access_token=${TOKEN_A}&access_token=${TOKEN_A}`))).toThrow(/more than once/);
  });

  it('the sockgate.bearer.* subprotocol, with the protocol to strip', () => {
    const protocol = bearerProtocol(TOKEN_A);
    expect(protocol).toBe(`${BEARER_PROTOCOL_PREFIX}${Buffer.from(TOKEN_A).toString('base64url')}`);
    expect(extractCredential(req({ 'sec-websocket-protocol': `sockgate.v1, ${protocol}` }))).toEqual({
      token: TOKEN_A,
      source: 'protocol',
      protocolToStrip: protocol,
    });
    expect(extractCredential(req({ 'sec-websocket-protocol': [protocol, 'sockgate.v1'] })).token).toBe(TOKEN_A);
    expect(isBearerProtocol(protocol)).toBe(true);
    expect(isBearerProtocol('sockgate.v1')).toBe(false);
    expect(isBearerProtocol('binary')).toBe(false);
  });

  it('refuses a malformed subprotocol token', () => {
    for (const bad of [BEARER_PROTOCOL_PREFIX, `${BEARER_PROTOCOL_PREFIX}!!!`, `${BEARER_PROTOCOL_PREFIX}abc=`, `${BEARER_PROTOCOL_PREFIX}${Buffer.from([0xff, 0xfe]).toString('base64url')}`]) {
      expect(() => extractCredential(req({ 'sec-websocket-protocol': `sockgate.v1, ${bad}` })), bad).toThrow(SockgateError);
    }
  });

  it('round-trips any token through the subprotocol carrier', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 64 }), (token) => {
        const got = extractCredential(req({ 'sec-websocket-protocol': `sockgate.v1,${bearerProtocol(token)}` }));
        expect(got.token).toBe(token);
      }),
      { numRuns: 200 },
    );
  });

  it('credentials in two places, or two in one, are ambiguous', () => {
    const protocol = bearerProtocol(TOKEN_A);
    const twice: [Record<string, string>, string][] = [
      [{ authorization: `Bearer ${TOKEN_A}` }, `/mux?access_token=${TOKEN_A}`],
      [{ authorization: `Bearer ${TOKEN_A}`, 'sec-websocket-protocol': `sockgate.v1, ${protocol}` }, '/mux'],
      [{ 'sec-websocket-protocol': `sockgate.v1, ${protocol}` }, `/mux?access_token=${TOKEN_B}`],
      [{ 'sec-websocket-protocol': `${protocol}, ${bearerProtocol(TOKEN_B)}, sockgate.v1` }, '/mux'],
    ];
    for (const [headers, url] of twice) throwsCode(() => extractCredential(req(headers, url)), 'SOCKGATE_ERR_AUTH_INVALID');
  });

  it('a 401 challenge names the bearer scheme (RFC 6750)', () => {
    expect(bearerChallenge(new SockgateError('SOCKGATE_ERR_AUTH_MISSING'))).toBe('Bearer realm="sockgate"');
    expect(bearerChallenge(new SockgateError('SOCKGATE_ERR_AUTH_EXPIRED'))).toBe('Bearer realm="sockgate", error="invalid_token"');
  });
});

describe('redaction', () => {
  it('redactUrl hides every access_token value, however its name is spelt', () => {
    expect(redactUrl('/mux')).toBe('/mux');
    expect(redactUrl('/mux?a=1')).toBe('/mux?a=1');
    expect(redactUrl(`/mux?access_token=${TOKEN_A}`)).toBe('/mux?access_token=[REDACTED]');
    expect(redactUrl(`/raw/ssh?a=1&access_token=${TOKEN_A}&b=2#f`)).toBe('/raw/ssh?a=1&access_token=[REDACTED]&b=2#f');
    expect(redactUrl(`/mux?access%5Ftoken=${TOKEN_A}&ACCESS_TOKEN=${TOKEN_B}&access_token`)).toBe(
      '/mux?access%5Ftoken=[REDACTED]&ACCESS_TOKEN=[REDACTED]&access_token=[REDACTED]',
    );
    expect(redactUrl('/mux?%zz=1&x')).toBe('/mux?%zz=1&x');
  });

  it('redactUrl never leaves the token the carrier would find', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 })), { maxLength: 4 }),
        fc.string({ minLength: 1, maxLength: 32 }),
        (others, token) => {
          const params = new URLSearchParams(others);
          params.append('access_token', `SECRET${token}`);
          const url = `/mux?${params.toString()}`;
          const redacted = redactUrl(url);
          expect(new URLSearchParams(redacted.slice(redacted.indexOf('?') + 1)).getAll('access_token')).toEqual(
            others.filter(([k]) => k === 'access_token').map(() => '[REDACTED]').concat('[REDACTED]'),
          );
        },
      ),
      { numRuns: 200 },
    );
  });

  it('redactHeaders hides authorization, cookies and bearer subprotocols, and copies', () => {
    const headers = {
      host: 'gw.example.com',
      authorization: `Bearer ${TOKEN_A}`,
      'proxy-authorization': 'Basic dXNlcjpwYXNz',
      cookie: 'sid=1',
      'sec-websocket-protocol': `sockgate.v1, ${bearerProtocol(TOKEN_B)}`,
      'content-length': undefined,
    };
    const out = redactHeaders(headers);
    expect(out).toEqual({
      host: 'gw.example.com',
      authorization: 'Bearer [REDACTED]',
      'proxy-authorization': 'Basic [REDACTED]',
      cookie: '[REDACTED]',
      'sec-websocket-protocol': 'sockgate.v1, sockgate.bearer.[REDACTED]',
      'content-length': undefined,
    });
    expect(headers.authorization).toBe(`Bearer ${TOKEN_A}`);
    expect(JSON.stringify(out)).not.toMatch(new RegExp(`${TOKEN_A}|${Buffer.from(TOKEN_B).toString('base64url')}`));
    expect(redactHeaders({ authorization: TOKEN_A }).authorization).toBe('[REDACTED]');
  });
});
