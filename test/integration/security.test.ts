/**
 * "Secure by default", attacked over real sockets on 127.0.0.1: credentials (three carriers, static tokens and
 * JWTs) checked before the upgrade, the Origin and Host checks, route permissions in raw mode and on every mux
 * OPEN, the refusal to start anonymously on a non-loopback address, and tokens kept out of logs. After each
 * attack a good client is still served.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { SUBPROTOCOL } from '../../shared/constants.js';
import { bearerProtocol } from '../../server/auth.js';
import { resolveConfig } from '../../server/config.js';
import { DEMO_CONFIG } from '../../server/demo-config.js';
import { createGateway } from '../../server/gateway.js';
import { closeSocket, expectMuxEcho, expectRawEcho, expectRefused, muxEcho, tryUpgrade } from '../helpers/attack.js';
import { type Backend, echoHandler, tcpBackend, waitFor } from '../helpers/backends.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { connectMux, within } from '../helpers/mux-client.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A static token for every route, one limited to `echo`, and an HS256 secret for JWTs. */
const OPS_TOKEN = 'ops-Zk3xQ9vT2mLr8Ws6Yn4Hb7Jc5Ud0Ae1F';
const ECHO_ONLY_TOKEN = 'echo-Pq7Rt2Vx9Bn4Mk6Lj3Hg8Fd5Sa1Zc0W';
const JWT_SECRET = 'a-test-secret-of-at-least-32-bytes-long!';
const AUTH = {
  tokens: [
    { name: 'ops', token: OPS_TOKEN, routes: ['*'] },
    { name: 'echo-only', token: ECHO_ONLY_TOKEN, routes: ['echo'] },
  ],
  jwt: { secret: JWT_SECRET, audience: 'sockgate', issuer: 'https://idp.test', clockToleranceSec: 0 },
};

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

/** An HS256 JWT signed here, valid for the gateway unless the overrides say otherwise. */
async function jwt(claims: { sub?: string; routes?: unknown; aud?: string; iss?: string; exp?: number } = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ routes: claims.routes ?? ['echo'] })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(claims.sub ?? 'alice')
    .setIssuer(claims.iss ?? 'https://idp.test')
    .setAudience(claims.aud ?? 'sockgate')
    .setIssuedAt(now - 5)
    .setExpirationTime(claims.exp ?? now + 600)
    .sign(new TextEncoder().encode(JWT_SECRET));
}

let echo: Backend;
let cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  cleanups = [];
});

beforeAll(async () => {
  echo = await tcpBackend(echoHandler);
  return () => echo.close();
});

/** A gateway with credentials, routes `echo` and `secret` (both echo servers). */
async function authGateway(extra: Record<string, unknown> = {}): Promise<TestGateway> {
  const gw = await startGateway({
    routes: { echo: { target: echo.target }, secret: { target: 'builtin:echo' } },
    auth: AUTH,
    ...extra,
  });
  cleanups.push(() => gw.close());
  return gw;
}

describe('authentication before the upgrade', () => {
  it('refuses a request without credentials: 401 with WWW-Authenticate, raw and mux', async () => {
    const gw = await authGateway();
    for (const [url, protocols] of [
      [`${gw.wsUrl}/mux`, [SUBPROTOCOL]],
      [`${gw.wsUrl}/raw/echo`, []],
    ] as const) {
      const r = await expectRefused(url, 401, 'SOCKGATE_ERR_AUTH_MISSING', { protocols: [...protocols] });
      expect(r.headers!['www-authenticate']).toBe('Bearer realm="sockgate"');
    }
    // Before the route is even looked up: an unauthenticated client learns nothing about which routes exist.
    await expectRefused(`${gw.wsUrl}/raw/no-such-route`, 401, 'SOCKGATE_ERR_AUTH_MISSING');
    await expectRawEcho(`${gw.wsUrl}/raw/echo`, { headers: bearer(OPS_TOKEN) });
  });

  it('refuses a wrong token with 401 invalid_token, and never echoes it', async () => {
    const gw = await authGateway();
    const wrong = 'wrong-Zk3xQ9vT2mLr8Ws6Yn4Hb7Jc5Ud0Ae1F';
    for (const opts of [
      { headers: bearer(wrong) },
      { headers: bearer(OPS_TOKEN.slice(0, -1)) },
      { protocols: [SUBPROTOCOL, bearerProtocol(wrong)] },
    ]) {
      const r = await expectRefused(`${gw.wsUrl}/mux`, 401, 'SOCKGATE_ERR_AUTH_INVALID', { protocols: [SUBPROTOCOL], ...opts });
      expect(r.headers!['www-authenticate']).toBe('Bearer realm="sockgate", error="invalid_token"');
      expect(r.body).not.toContain(wrong);
    }
    const q = await expectRefused(`${gw.wsUrl}/raw/echo?access_token=${wrong}`, 401, 'SOCKGATE_ERR_AUTH_INVALID');
    expect(q.body).not.toContain(wrong);
    await expectMuxEcho(`${gw.wsUrl}/mux`, 'echo', { headers: bearer(OPS_TOKEN) });
  });

  it('accepts the token in each of the three carriers; the bearer subprotocol is never selected', async () => {
    const gw = await authGateway();
    // Authorization header.
    await expectMuxEcho(`${gw.wsUrl}/mux`, 'echo', { headers: bearer(OPS_TOKEN) });
    await expectRawEcho(`${gw.wsUrl}/raw/echo`, { headers: bearer(OPS_TOKEN) });
    // Query string.
    await expectMuxEcho(`${gw.wsUrl}/mux?access_token=${OPS_TOKEN}`);
    await expectRawEcho(`${gw.wsUrl}/raw/echo?access_token=${OPS_TOKEN}`);
    // Subprotocol: mux selects sockgate.v1, raw selects binary, never the credential.
    const mux = await connectMux(`${gw.wsUrl}/mux`, { protocols: [bearerProtocol(OPS_TOKEN)] });
    expect(mux.ws.protocol).toBe(SUBPROTOCOL);
    await muxEcho(mux);
    await mux.close();
    const raw = await tryUpgrade(`${gw.wsUrl}/raw/echo`, { protocols: [bearerProtocol(OPS_TOKEN), 'binary'] });
    expect(raw.ws?.protocol).toBe('binary');
    await closeSocket(raw.ws!);
    await expectRawEcho(`${gw.wsUrl}/raw/echo`, { protocols: ['binary', bearerProtocol(OPS_TOKEN)] });
  });

  it('refuses a credential given in two carriers, even the same one', async () => {
    const gw = await authGateway();
    await expectRefused(`${gw.wsUrl}/mux?access_token=${OPS_TOKEN}`, 401, 'SOCKGATE_ERR_AUTH_INVALID', {
      protocols: [SUBPROTOCOL],
      headers: bearer(OPS_TOKEN),
    });
    await expectRefused(`${gw.wsUrl}/raw/echo?access_token=${OPS_TOKEN}&access_token=${OPS_TOKEN}`, 401, 'SOCKGATE_ERR_AUTH_INVALID');
    await expectRawEcho(`${gw.wsUrl}/raw/echo?access_token=${OPS_TOKEN}`);
  });

  it('accepts a valid JWT; refuses an expired one (AUTH_EXPIRED) and one for another audience or issuer', async () => {
    const gw = await authGateway();
    await expectMuxEcho(`${gw.wsUrl}/mux`, 'echo', { headers: bearer(await jwt()) });
    const now = Math.floor(Date.now() / 1000);
    const expired = await expectRefused(`${gw.wsUrl}/mux`, 401, 'SOCKGATE_ERR_AUTH_EXPIRED', {
      protocols: [SUBPROTOCOL],
      headers: bearer(await jwt({ exp: now - 60 })),
    });
    expect(expired.headers!['www-authenticate']).toContain('error="invalid_token"');
    await expectRefused(`${gw.wsUrl}/mux`, 401, 'SOCKGATE_ERR_AUTH_INVALID', {
      protocols: [SUBPROTOCOL],
      headers: bearer(await jwt({ aud: 'another-service' })),
    });
    await expectRefused(`${gw.wsUrl}/raw/echo`, 401, 'SOCKGATE_ERR_AUTH_INVALID', { headers: bearer(await jwt({ iss: 'https://evil.test' })) });
    // Signed with another key.
    const forged = await new SignJWT({ routes: '*' })
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('mallory')
      .setAudience('sockgate')
      .setIssuer('https://idp.test')
      .setExpirationTime(now + 600)
      .sign(new TextEncoder().encode('another-secret-of-at-least-32-bytes!!'));
    await expectRefused(`${gw.wsUrl}/raw/echo`, 401, 'SOCKGATE_ERR_AUTH_INVALID', { headers: bearer(forged) });
    await expectRawEcho(`${gw.wsUrl}/raw/echo`, { headers: bearer(await jwt()) });
  });

  it('with allowAnonymous, no credential is the anonymous principal, but a wrong one is still refused', async () => {
    const gw = await authGateway({ allowAnonymous: true });
    await expectMuxEcho(`${gw.wsUrl}/mux`);
    await expectRawEcho(`${gw.wsUrl}/raw/secret`);
    await expectRefused(`${gw.wsUrl}/raw/echo`, 401, 'SOCKGATE_ERR_AUTH_INVALID', { headers: bearer('not-a-valid-token-at-all') });
  });
});

describe('Origin and Host before the upgrade', () => {
  it('refuses a foreign Origin with 403 even with a valid token', async () => {
    const gw = await authGateway({ origins: ['https://app.example.com'] });
    for (const origin of ['https://evil.example', 'https://app.example.com.evil.example', 'null', 'http://app.example.com']) {
      await expectRefused(`${gw.wsUrl}/mux`, 403, 'SOCKGATE_ERR_ORIGIN_FORBIDDEN', { protocols: [SUBPROTOCOL], headers: bearer(OPS_TOKEN), origin });
      await expectRefused(`${gw.wsUrl}/raw/echo`, 403, 'SOCKGATE_ERR_ORIGIN_FORBIDDEN', { headers: bearer(OPS_TOKEN), origin });
    }
    await expectMuxEcho(`${gw.wsUrl}/mux`, 'echo', { headers: bearer(OPS_TOKEN), origin: 'https://app.example.com' });
  });

  it('accepts a listed Origin, a wildcard match and the gateway own origin; a wildcard never matches its apex', async () => {
    const gw = await authGateway({ origins: ['https://app.example.com', 'https://*.apps.example.net:8443'] });
    const ok = async (origin: string): Promise<void> =>
      expectMuxEcho(`${gw.wsUrl}/mux`, 'echo', { protocols: [bearerProtocol(OPS_TOKEN)], origin });
    await ok('https://app.example.com');
    await ok('https://APP.example.com/');
    await ok('https://a.apps.example.net:8443');
    await ok('https://a.b.apps.example.net:8443');
    await ok(gw.url); // http://127.0.0.1:PORT: same origin
    for (const origin of ['https://apps.example.net:8443', 'https://a.apps.example.net', 'http://a.apps.example.net:8443', 'https://evilapps.example.net:8443']) {
      await expectRefused(`${gw.wsUrl}/mux`, 403, 'SOCKGATE_ERR_ORIGIN_FORBIDDEN', { protocols: [SUBPROTOCOL, bearerProtocol(OPS_TOKEN)], origin });
    }
  });

  it('lets a client without Origin through only with a credential (or anonymous access)', async () => {
    const gw = await authGateway();
    await expectRefused(`${gw.wsUrl}/raw/echo`, 401, 'SOCKGATE_ERR_AUTH_MISSING');
    await expectRawEcho(`${gw.wsUrl}/raw/echo`, { headers: bearer(OPS_TOKEN) });
  });

  it('refuses a DNS-rebinding Host on an anonymous loopback gateway, and accepts the loopback names', async () => {
    const gw = await startGateway({ routes: { echo: { target: echo.target } } });
    cleanups.push(() => gw.close());
    // A page at rebind.attacker.example whose name now resolves to 127.0.0.1: same-origin as far as Origin goes.
    const host = `rebind.attacker.example:${gw.port}`;
    await expectRefused(`${gw.wsUrl}/raw/echo`, 403, 'SOCKGATE_ERR_ORIGIN_FORBIDDEN', { headers: { host }, origin: `http://${host}` });
    await expectRefused(`${gw.wsUrl}/mux`, 403, 'SOCKGATE_ERR_ORIGIN_FORBIDDEN', { protocols: [SUBPROTOCOL], headers: { host } });
    for (const name of ['localhost', '127.0.0.1', '[::1]']) {
      const h = `${name}:${gw.port}`;
      await expectRawEcho(`${gw.wsUrl}/raw/echo`, { headers: { host: h }, origin: `http://${h}` });
    }
  });
});

describe('route permissions', () => {
  it('raw mode: a route the credential does not allow is 403, an unknown one 404, the allowed one works', async () => {
    const gw = await authGateway();
    await expectRefused(`${gw.wsUrl}/raw/secret`, 403, 'SOCKGATE_ERR_ROUTE_FORBIDDEN', { headers: bearer(ECHO_ONLY_TOKEN) });
    await expectRefused(`${gw.wsUrl}/raw/secret`, 403, 'SOCKGATE_ERR_ROUTE_FORBIDDEN', { headers: bearer(await jwt({ routes: ['echo'] })) });
    // A limited credential cannot tell unknown routes from forbidden ones; an all-routes one gets the 404.
    await expectRefused(`${gw.wsUrl}/raw/nope`, 403, 'SOCKGATE_ERR_ROUTE_FORBIDDEN', { headers: bearer(ECHO_ONLY_TOKEN) });
    await expectRefused(`${gw.wsUrl}/raw/nope`, 404, 'SOCKGATE_ERR_ROUTE_UNKNOWN', { headers: bearer(OPS_TOKEN) });
    await expectRawEcho(`${gw.wsUrl}/raw/echo`, { headers: bearer(ECHO_ONLY_TOKEN) });
    await expectRawEcho(`${gw.wsUrl}/raw/secret`, { headers: bearer(OPS_TOKEN) });
  });

  it('mux: every OPEN is checked; a forbidden route is OPEN_FAIL, the allowed one works on the same session', async () => {
    const gw = await authGateway();
    for (const headers of [bearer(ECHO_ONLY_TOKEN), bearer(await jwt({ routes: ['echo'] }))]) {
      const c = await connectMux(`${gw.wsUrl}/mux`, { headers });
      cleanups.push(() => c.close());
      const denied = c.open('secret');
      const err = await within(denied.closed, 5000, 'OPEN_FAIL');
      expect(err?.code).toBe('SOCKGATE_ERR_ROUTE_FORBIDDEN');
      expect((await within(c.open('nope').closed, 5000, 'OPEN_FAIL'))?.code).toBe('SOCKGATE_ERR_ROUTE_FORBIDDEN');
      await muxEcho(c, 'echo');
      expect(c.session.closed).toBe(false);
    }
  });

  it('mux: once the JWT expires, new OPENs are refused (credential expired) and open streams go on', async () => {
    const gw = await authGateway();
    const exp = Math.floor(Date.now() / 1000) + 2;
    const c = await connectMux(`${gw.wsUrl}/mux`, { headers: bearer(await jwt({ exp })) });
    cleanups.push(() => c.close());
    const open = c.open('echo');
    await within(open.opened, 5000, 'OPEN_OK');
    await waitFor(() => Date.now() > exp * 1000 + 50, 5000, 'the token to expire');
    const late = c.open('echo');
    const err = await within(late.closed, 5000, 'OPEN_FAIL');
    expect(err?.code).toBe('SOCKGATE_ERR_ROUTE_FORBIDDEN');
    expect(err?.message).toContain('credential expired');
    // The stream opened before the expiry still carries bytes both ways.
    await open.write(Buffer.from('still here'));
    open.end();
    expect(await within(open.closed, 5000, 'the open stream to finish')).toBeUndefined();
    expect(open.data().toString()).toBe('still here');
    // A fresh credential opens a fresh session.
    await expectMuxEcho(`${gw.wsUrl}/mux`, 'echo', { headers: bearer(await jwt()) });
  });
});

describe('secure defaults', () => {
  it('createGateway refuses a non-loopback address without credentials, before anything binds', async () => {
    for (const listen of ['0.0.0.0:0', '[::]:0']) {
      await expect(createGateway({ listen, routes: { echo: { target: 'builtin:echo' } } })).rejects.toMatchObject({
        code: 'SOCKGATE_ERR_CONFIG_INVALID',
        message: expect.stringMatching(/listen: .* is not a loopback address and no credentials are configured \(auth\).*allowAnonymous: true/),
      });
    }
    // Credentials or allowAnonymous make the same address acceptable (checked without binding).
    expect(resolveConfig({ listen: '0.0.0.0:0', auth: AUTH }).anonymous).toBe('off');
    expect(resolveConfig({ listen: '0.0.0.0:0', allowAnonymous: true }).anonymous).toBe('on');
  });

  it('the CLI refuses it too: one line on stderr, exit 1', async () => {
    const cli = join(root, 'dist', 'server', 'cli.js');
    if (!existsSync(cli)) {
      execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe', timeout: 120_000 });
    }
    const child: ChildProcess = spawn(process.execPath, [cli, 'serve', '--listen', '0.0.0.0:0'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await within(new Promise<number | null>((r) => child.on('close', r)), 15_000, 'the CLI to exit').finally(() => child.kill('SIGKILL'));
    expect(code).toBe(1);
    const lines = stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^sockgate: invalid configuration: listen: 0\.0\.0\.0:0 is not a loopback address .*--allow-anonymous/);
  }, 150_000);

  it('on loopback without credentials it serves anonymous local clients, with a warning at start', async () => {
    const lines: Record<string, unknown>[] = [];
    const gateway = await createGateway(
      { listen: '127.0.0.1:0', routes: { echo: { target: echo.target } } },
      { logger: { level: 'info', stream: lineCollector(lines) } },
    );
    cleanups.push(() => gateway.close());
    const { url } = await gateway.listen();
    const warning = lines.find((l) => l.level === 40 && String(l.msg).startsWith('no credentials configured (auth)'));
    expect(warning).toBeDefined();
    await expectMuxEcho(`${url.replace(/^http/, 'ws')}/mux`);
    // A credential is not silently ignored where none can be checked.
    await expectRefused(`${url.replace(/^http/, 'ws')}/raw/echo`, 401, 'SOCKGATE_ERR_AUTH_INVALID', { headers: bearer(OPS_TOKEN) });
  });

  it('the demo config (npm start) works out of the box on loopback', async () => {
    const gw = await startGateway(structuredClone(DEMO_CONFIG));
    cleanups.push(() => gw.close());
    expect(gw.gateway.config.anonymous).toBe('loopback');
    await expectRawEcho(`${gw.wsUrl}/raw/echo`, { origin: gw.url });
    await expectMuxEcho(`${gw.wsUrl}/mux`, 'echo', { origin: gw.url });
    await expectRefused(`${gw.wsUrl}/mux`, 403, 'SOCKGATE_ERR_ORIGIN_FORBIDDEN', { protocols: [SUBPROTOCOL], origin: 'https://evil.example' });
  });
});

describe('tokens never reach the logs', () => {
  it('with every carrier, accepted or refused, and in plain requests', async () => {
    let text = '';
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        text += chunk.toString();
        cb();
      },
    });
    const gateway = await createGateway(
      { listen: '127.0.0.1:0', routes: { echo: { target: echo.target } }, auth: AUTH },
      { logger: { level: 'trace', stream } },
    );
    cleanups.push(() => gateway.close());
    const { url } = await gateway.listen();
    const wsUrl = url.replace(/^http/, 'ws');
    const token = await jwt({ routes: '*' });
    const wrong = 'wrong-but-secret-Xy7Qp2Lm9Nc4Vb8Kd3';

    for (const t of [OPS_TOKEN, token]) {
      await expectMuxEcho(`${wsUrl}/mux`, 'echo', { headers: bearer(t) });
      await expectMuxEcho(`${wsUrl}/mux?access_token=${t}`);
      await expectRawEcho(`${wsUrl}/raw/echo`, { protocols: ['binary', bearerProtocol(t)] });
    }
    await expectRefused(`${wsUrl}/mux?access_token=${wrong}`, 401, 'SOCKGATE_ERR_AUTH_INVALID', { protocols: [SUBPROTOCOL] });
    await expectRefused(`${wsUrl}/raw/echo`, 401, 'SOCKGATE_ERR_AUTH_INVALID', { headers: bearer(wrong) });
    await expectRefused(`${wsUrl}/raw/echo`, 401, 'SOCKGATE_ERR_AUTH_INVALID', { protocols: ['binary', bearerProtocol(wrong)] });
    await expectRefused(`${wsUrl}/raw/echo?access_token=${OPS_TOKEN}`, 403, 'SOCKGATE_ERR_ORIGIN_FORBIDDEN', { origin: 'https://evil.example' });
    // Plain HTTP requests are logged with their URL: through the redacting serializer.
    for (const path of [`/healthz?access_token=${OPS_TOKEN}`, `/mux?access_token=${OPS_TOKEN}`, `/nowhere?a=1&access_token=${token}`]) {
      await fetch(`${url}${path}`, { headers: bearer(OPS_TOKEN) });
    }
    await waitFor(() => text.includes('[REDACTED]') && text.includes('mux session closed'), 5000, 'the log lines');
    await gateway.close();

    for (const secret of [OPS_TOKEN, token, wrong, JWT_SECRET]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(bearerProtocol(secret).slice('sockgate.bearer.'.length));
      expect(text).not.toContain(encodeURIComponent(secret));
    }
    // The lines that would have carried them are there, redacted: the test looked at the right place.
    expect(text).toContain('access_token=[REDACTED]');
    expect(text).toContain('upgrade refused');
  });
});

/** A pino destination that parses each JSON line into `lines`. */
function lineCollector(lines: Record<string, unknown>[]): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
}
