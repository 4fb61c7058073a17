import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { INITIAL_WINDOW, MAX_FRAME_BYTES, MAX_WINDOW } from '../../shared/constants.js';
import { LIMIT_DEFAULTS, LIMIT_RANGES } from '../../server/limits.js';
import { SockgateError } from '../../shared/errors.js';
import {
  DEFAULTS,
  formatListen,
  isLoopbackHost,
  isResolvedConfig,
  loadConfigFile,
  parseListen,
  readConfigFile,
  resolveConfig,
} from '../../server/config.js';

/** The error resolveConfig throws for input, checked to be SOCKGATE_ERR_CONFIG_INVALID. */
function errorFor(input: unknown): string {
  try {
    resolveConfig(input);
  } catch (err) {
    expect(err).toBeInstanceOf(SockgateError);
    expect((err as SockgateError).code).toBe('SOCKGATE_ERR_CONFIG_INVALID');
    return (err as Error).message;
  }
  throw new Error(`resolveConfig accepted ${JSON.stringify(input)}`);
}

describe('resolveConfig: defaults', () => {
  it('fills every default from an empty object', () => {
    const c = resolveConfig({});
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(c.routes.size).toBe(0);
    expect(c.origins).toEqual([]);
    expect(c.allowAnonymous).toBe(false);
    expect(c.trustProxy).toBe(false);
    expect(c.auth).toBeUndefined();
    // No credentials on loopback: anonymous for local clients, with the Host check against DNS rebinding.
    expect(c.anonymous).toBe('loopback');
    expect(c.allowedHosts).toEqual(['localhost', '127.0.0.1', '[::1]']);
    expect(c.demo).toBe(false);
    expect(c.limits).toEqual(DEFAULTS.limits);
  });

  it('takes the limits, their defaults and bounds from server/limits.ts (one source)', () => {
    expect(DEFAULTS.listen).toBe('127.0.0.1:8080');
    expect(DEFAULTS.limits).toBe(LIMIT_DEFAULTS);
    expect(Object.keys(DEFAULTS.limits).sort()).toEqual(
      [
        'handshakeTimeoutMs',
        'idleTimeoutMs',
        'maxMessageBytes',
        'maxSessions',
        'maxSessionsPerIp',
        'maxStreamsPerSession',
        'maxTransportBufferedBytes',
        'maxWindowBytes',
        'maxSessionWindowBytes',
        'openTimeoutMs',
        'opensBurst',
        'opensPerSecond',
        'keepaliveIntervalMs',
        'keepaliveTimeoutMs',
        'drainTimeoutMs',
      ].sort(),
    );
    expect(DEFAULTS.limits).toMatchObject({
      maxMessageBytes: 1024 * 1024,
      openTimeoutMs: 10_000,
      maxStreamsPerSession: 256,
      maxWindowBytes: 4 * 1024 * 1024,
      maxTransportBufferedBytes: 1024 * 1024,
    });
    // Every default lies within its bounds.
    for (const [key, [min, max]] of Object.entries(LIMIT_RANGES)) {
      const v = DEFAULTS.limits[key as keyof typeof DEFAULTS.limits];
      expect(v, key).toBeGreaterThanOrEqual(min);
      expect(v, key).toBeLessThanOrEqual(max);
    }
    expect(LIMIT_RANGES.maxWindowBytes.slice(0, 2)).toEqual([INITIAL_WINDOW, MAX_WINDOW]);
    expect(LIMIT_RANGES.maxMessageBytes[0]).toBe(MAX_FRAME_BYTES);
  });

  it('keeps given values and parses routes into a Map', () => {
    const c = resolveConfig({
      listen: '[::1]:9000',
      routes: {
        ssh: { target: 'tcp://127.0.0.1:22' },
        'db.main_1-x': { target: 'unix:/run/pg.sock' },
        echo: { target: 'builtin:echo' },
        compose: { target: 'tcp://my_db.internal.:5432' },
      },
      origins: ['https://app.example.com', 'http://localhost:3000', 'https://*.example.org', 'null'],
      allowAnonymous: true,
      auth: { tokens: [{ name: 'a', token: 'a'.repeat(32), routes: ['ssh'] }], jwt: { secret: 's'.repeat(32), issuer: 'x' } },
      limits: { openTimeoutMs: 500, maxWindowBytes: MAX_WINDOW },
      demo: true,
    });
    expect(c.listen).toEqual({ host: '::1', port: 9000 });
    expect([...c.routes.keys()]).toEqual(['ssh', 'db.main_1-x', 'echo', 'compose']);
    expect(c.routes.get('ssh')).toEqual({ name: 'ssh', target: { kind: 'tcp', host: '127.0.0.1', port: 22 } });
    expect(c.routes.get('db.main_1-x')!.target).toEqual({ kind: 'unix', path: '/run/pg.sock' });
    expect(c.routes.get('echo')!.target).toEqual({ kind: 'builtin', name: 'echo' });
    expect(c.origins).toEqual(['https://app.example.com', 'http://localhost:3000', 'https://*.example.org', 'null']);
    expect(c.allowAnonymous).toBe(true);
    expect(c.anonymous).toBe('on');
    expect(c.allowedHosts).toEqual(['localhost', '127.0.0.1', '[::1]']);
    // Validated (and defaulted) by server/auth.ts's schema.
    expect(c.auth).toEqual({
      tokens: [{ name: 'a', token: 'a'.repeat(32), routes: ['ssh'] }],
      jwt: { secret: 's'.repeat(32), issuer: 'x', clockToleranceSec: 30, routesClaim: 'routes', nameClaim: 'sub' },
    });
    expect(c.limits.openTimeoutMs).toBe(500);
    expect(c.limits.maxWindowBytes).toBe(MAX_WINDOW);
    expect(c.limits.maxMessageBytes).toBe(DEFAULTS.limits.maxMessageBytes);
    expect(c.demo).toBe(true);
  });

  it('returns a frozen config that it recognises as resolved', () => {
    const c = resolveConfig({});
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.limits)).toBe(true);
    expect(isResolvedConfig(c)).toBe(true);
    expect(isResolvedConfig({ ...c })).toBe(false);
    expect(resolveConfig(c)).toBe(c);
  });

  it('never looks a route up through the prototype', () => {
    const c = resolveConfig({ routes: { a: { target: 'builtin:echo' } } });
    expect(c.routes.get('constructor')).toBeUndefined();
    expect(c.routes.get('toString')).toBeUndefined();
  });
});

describe('resolveConfig: errors name the key', () => {
  it.each([
    [null, /^invalid configuration: config: expected an object$/],
    [[], /config: expected an object/],
    ['listen: x', /config: expected an object/],
    [{ listen: 8080 }, /^invalid configuration: listen: expected "HOST:PORT"/],
    [{ listen: '::1:8080' }, /listen: expected "HOST:PORT" \(IPv6 as "\[::1\]:8080"\)/],
    [{ listen: '127.0.0.1' }, /listen: expected "HOST:PORT"/],
    [{ listen: '127.0.0.1:70000' }, /listen: port must be 0\.\.65535/],
    [{ listen: '[zz]:80' }, /listen: /],
    [{ routes: { ssh: { target: 'ftp://x' } } }, /routes\.ssh\.target: target "ftp:\/\/x": expected tcp:\/\/host:port/],
    [{ routes: { ssh: { target: 'tcp://h:0' } } }, /routes\.ssh\.target: .*port must be 1\.\.65535/],
    [{ routes: { ssh: { target: 'unix:relative.sock' } } }, /routes\.ssh\.target: .*absolute/],
    [{ routes: { ssh: { target: 'tcp://user@db:22' } } }, /routes\.ssh\.target: .*bad host name "user@db"/],
    [{ routes: { ssh: { target: 'tcp://a b:22' } } }, /routes\.ssh\.target: .*bad host name "a b"/],
    [{ routes: { ssh: { target: 'tcp://-x.example:22' } } }, /routes\.ssh\.target: .*bad host name/],
    [{ routes: { ssh: { target: 22 } } }, /routes\.ssh\.target: expected a string/],
    [{ routes: { ssh: {} } }, /routes\.ssh\.target: expected a string/],
    [{ routes: { ssh: 'tcp://h:22' } }, /routes\.ssh: /],
    [{ routes: { ssh: { target: 'builtin:echo', port: 1 } } }, /routes\.ssh\.port: unknown key/],
    [{ routes: { 'bad name': { target: 'builtin:echo' } } }, /routes\["bad name"\]: a route name is 1 to 255 characters/],
    [{ routes: { ['x'.repeat(256)]: { target: 'builtin:echo' } } }, /a route name is 1 to 255 characters/],
    [{ routes: [] }, /^invalid configuration: routes: /],
    [{ origins: 'https://a.example' }, /origins: expected a list/],
    [{ origins: ['https://a.example/path'] }, /origins\[0\] "https:\/\/a\.example\/path": expected scheme:\/\/host\[:port\]/],
    [{ origins: ['https://ok.example', 'a.example'] }, /origins\[1\] "a\.example": expected scheme/],
    [{ origins: ['https://*example.com'] }, /origins\[0\] .*wildcard must be the whole first label/],
    [{ origins: ['https://*.com'] }, /origins\[0\] .*two labels/],
    [{ origins: [1] }, /origins\[0\]: expected a string/],
    [{ allowedHosts: 'gw.example.com' }, /allowedHosts: expected a list/],
    [{ allowedHosts: ['gw.example.com:8080'] }, /allowedHosts\[0\] "gw\.example\.com:8080": expected a host name/],
    [{ allowedHosts: ['*', 'a.example'] }, /allowedHosts: "\*" \(any host\) must be the only entry/],
    [{ trustProxy: 'yes' }, /trustProxy: expected true or false/],
    [{ allowAnonymous: 'yes' }, /allowAnonymous: expected true or false/],
    [{ demo: 1 }, /demo: expected true or false/],
    [{ auth: 'token' }, /auth: expected an object/],
    [{ auth: { tokens: 'x' } }, /auth\.tokens: expected a list/],
    [{ auth: { jwt: 'x' } }, /auth\.jwt: expected an object/],
    [{ auth: { basic: {} } }, /auth\.basic: unknown key/],
    [{ auth: { tokens: [{ name: 'a', token: 'short', routes: ['*'] }] } }, /auth\.tokens\[0\]\.token: must be at least 16 characters/],
    [{ auth: { tokens: [{ name: 'a', token: 'x'.repeat(20) }] } }, /auth\.tokens\[0\]\.routes: /],
    [{ auth: { jwt: { issuer: 'x' } } }, /auth\.jwt: give at least one key source/],
    [{ auth: { jwt: { secret: 'short' } } }, /auth\.jwt\.secret: must be at least 32 bytes/],
    [{ limits: 5 }, /limits: /],
    [{ limits: { maxMessageBytes: '1MiB' } }, /limits\.maxMessageBytes: expected a number \(bytes\)/],
    [{ limits: { maxMessageBytes: 1024 } }, /limits\.maxMessageBytes: must be at least 65542 \(bytes\)/],
    [{ limits: { openTimeoutMs: 0 } }, /limits\.openTimeoutMs: must be at least 1 \(milliseconds\)/],
    [{ limits: { openTimeoutMs: 1.5 } }, /limits\.openTimeoutMs: expected a whole number/],
    [{ limits: { maxStreamsPerSession: 0 } }, /limits\.maxStreamsPerSession: must be at least 1/],
    [{ limits: { maxWindowBytes: MAX_WINDOW + 1 } }, /limits\.maxWindowBytes: must be at most 16777216/],
    [{ limits: { maxWindowBytes: INITIAL_WINDOW - 1 } }, /limits\.maxWindowBytes: must be at least 262144/],
    [{ limits: { maxTransportBufferedBytes: 1 } }, /limits\.maxTransportBufferedBytes: must be at least/],
    [{ limits: { maxSessionz: 1 } }, /limits\.maxSessionz: unknown key/],
    [{ limits: { maxSessions: 0 } }, /limits\.maxSessions: must be at least 1 \(sessions\)/],
    [{ limits: { handshakeTimeoutMs: 10 } }, /limits\.handshakeTimeoutMs: must be at least 100 \(milliseconds\)/],
    [{ limits: { idleTimeoutMs: -1 } }, /limits\.idleTimeoutMs: must be at least 0/],
    [{ lsiten: '127.0.0.1:1' }, /^invalid configuration: lsiten: unknown key$/],
  ])('%j', (input, pattern) => {
    expect(errorFor(input)).toMatch(pattern);
  });

  it('names every bad key at once', () => {
    const msg = errorFor({ listen: 'x', routes: { a: { target: 'nope' } }, limits: { openTimeoutMs: -1 }, extra: 1 });
    expect(msg).toContain('limits.openTimeoutMs');
    expect(msg).toContain('extra: unknown key');
  });

  it('names a __proto__ key instead of silently dropping it', () => {
    expect(errorFor(JSON.parse('{"routes":{"__proto__":{"target":"builtin:echo"}}}'))).toMatch(/routes\.__proto__: unknown key/);
    expect(errorFor(JSON.parse('{"__proto__":{"demo":true}}'))).toMatch(/__proto__: unknown key/);
  });

  it('never quotes a credential', () => {
    const secret = 'do-not-print-me-' + 'x'.repeat(20);
    const msg = errorFor({ auth: { tokens: [{ name: 'a', token: secret, routes: [] }], jwt: { secret: secret.slice(0, 10) } } });
    expect(msg).toMatch(/auth\./);
    expect(msg).not.toContain(secret.slice(0, 10));
  });

  it('is one line', () => {
    expect(errorFor({ routes: { a: { target: 'x' }, b: { target: 'y' } } })).not.toContain('\n');
  });
});

describe('resolveConfig: secure defaults', () => {
  const token = { tokens: [{ name: 'ops', token: 't'.repeat(32), routes: ['*'] }] };

  it('refuses a non-loopback listen address without credentials, naming both ways out', () => {
    for (const listen of ['0.0.0.0:8080', '[::]:8080', '192.0.2.1:80', 'gw.example.com:443']) {
      const msg = errorFor({ listen });
      expect(msg).toMatch(/^invalid configuration: listen: .* is not a loopback address and no credentials are configured \(auth\)/);
      expect(msg).toContain('allowAnonymous: true (--allow-anonymous)');
      expect(msg).not.toContain('\n');
    }
  });

  it('accepts a non-loopback address with credentials, or with allowAnonymous', () => {
    expect(resolveConfig({ listen: '0.0.0.0:8080', auth: token }).anonymous).toBe('off');
    const anon = resolveConfig({ listen: '0.0.0.0:8080', allowAnonymous: true });
    expect(anon.anonymous).toBe('on');
    // No way to know the public host names: the Host check is off unless allowedHosts is set.
    expect(anon.allowedHosts).toBeUndefined();
    expect(resolveConfig({ listen: '0.0.0.0:8080', allowAnonymous: true, allowedHosts: ['gw.example.com'] }).allowedHosts).toEqual(['gw.example.com']);
  });

  it('refuses trustProxy without credentials: behind a proxy, loopback is not local', () => {
    expect(errorFor({ trustProxy: true })).toMatch(/trustProxy: clients come through a proxy/);
    expect(resolveConfig({ trustProxy: true, auth: token }).trustProxy).toBe(true);
    expect(resolveConfig({ trustProxy: true, allowAnonymous: true }).anonymous).toBe('on');
    // Behind a proxy the Host is the public name: no loopback default, allowedHosts is the operator's to set.
    expect(resolveConfig({ trustProxy: true, allowAnonymous: true }).allowedHosts).toBeUndefined();
  });

  it('defaults allowedHosts to the loopback names (plus the listen host) only for anonymous loopback gateways', () => {
    expect(resolveConfig({ listen: '127.0.0.2:1' }).allowedHosts).toEqual(['localhost', '127.0.0.1', '[::1]', '127.0.0.2']);
    expect(resolveConfig({ listen: '[::1]:1' }).allowedHosts).toEqual(['localhost', '127.0.0.1', '[::1]']);
    expect(resolveConfig({ auth: token }).allowedHosts).toBeUndefined();
    expect(resolveConfig({ allowedHosts: ['*'] }).allowedHosts).toBeUndefined();
    expect(resolveConfig({ auth: { tokens: [] } }).anonymous).toBe('loopback');
  });

  it.each([
    ['localhost', true],
    ['LOCALHOST', true],
    ['127.0.0.1', true],
    ['127.255.0.9', true],
    ['::1', true],
    ['[::1]', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['128.0.0.1', false],
    ['localhost.example.com', false],
    ['', false],
  ])('isLoopbackHost(%j) is %s', (host, loopback) => {
    expect(isLoopbackHost(host)).toBe(loopback);
  });
});

describe('parseListen / formatListen', () => {
  it.each([
    ['127.0.0.1:8080', { host: '127.0.0.1', port: 8080 }],
    ['0.0.0.0:0', { host: '0.0.0.0', port: 0 }],
    ['localhost:65535', { host: 'localhost', port: 65535 }],
    ['[::1]:8080', { host: '::1', port: 8080 }],
    ['[::]:443', { host: '::', port: 443 }],
  ])('%s', (text, addr) => {
    expect(parseListen(text)).toEqual(addr);
    expect(formatListen(addr)).toBe(text);
  });

  it.each(['', ':8080', '127.0.0.1', '127.0.0.1:', '::1:8080', '[::1]', '[::1]:x', 'a b:80', 'host:123456', 'http://h:80'])(
    'refuses %j',
    (text) => {
      expect(() => parseListen(text)).toThrow(SockgateError);
    },
  );
});

describe('config files', () => {
  let dir: string;
  const file = (name: string, text: string): string => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sockgate-config-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('loads YAML (.yaml and .yml)', async () => {
    const yaml = 'listen: 127.0.0.1:9001\nroutes:\n  ssh: { target: tcp://127.0.0.1:22 }\n  vnc: { target: "tcp://[::1]:5901" }\nlimits:\n  openTimeoutMs: 2000\n';
    for (const name of ['a.yaml', 'a.yml']) {
      const c = await loadConfigFile(file(name, yaml));
      expect(c.listen).toEqual({ host: '127.0.0.1', port: 9001 });
      expect(c.routes.get('vnc')!.target).toEqual({ kind: 'tcp', host: '::1', port: 5901 });
      expect(c.limits.openTimeoutMs).toBe(2000);
    }
  });

  it('loads JSON', async () => {
    const c = await loadConfigFile(file('a.json', JSON.stringify({ routes: { echo: { target: 'builtin:echo' } }, demo: true })));
    expect(c.demo).toBe(true);
    expect(c.routes.has('echo')).toBe(true);
  });

  it('treats an empty YAML file as all defaults', async () => {
    const c = await loadConfigFile(file('empty.yaml', ''));
    expect(c.listen).toEqual({ host: '127.0.0.1', port: 8080 });
  });

  it('reads without validating (flags are laid over it first)', async () => {
    expect(await readConfigFile(file('raw.yaml', 'routes:\n  x: { target: nope }\n'))).toEqual({ routes: { x: { target: 'nope' } } });
  });

  it('names the file and the key for an invalid config', async () => {
    const path = file('bad.yaml', 'routes:\n  ssh:\n    target: ftp://x\n');
    await expect(loadConfigFile(path)).rejects.toThrow(`invalid configuration: ${path}: routes.ssh.target: `);
  });

  it('names the file for a YAML or JSON syntax error, on one line', async () => {
    const y = file('broken.yaml', 'routes: [\n  a\n');
    const err = (await loadConfigFile(y).then(() => undefined, (e: unknown) => e)) as SockgateError;
    expect(err).toBeInstanceOf(SockgateError);
    expect(err.code).toBe('SOCKGATE_ERR_CONFIG_INVALID');
    expect(err.message).toContain(`${y}: YAML parse error`);
    expect(err.message).not.toContain('\n');
    const j = file('broken.json', '{"routes": ');
    await expect(loadConfigFile(j)).rejects.toThrow(`${j}: JSON parse error`);
  });

  it('refuses a duplicate YAML key', async () => {
    await expect(loadConfigFile(file('dup.yaml', 'demo: true\ndemo: false\n'))).rejects.toThrow(/YAML parse error/);
  });

  it('names the file when it cannot be read', async () => {
    const path = join(dir, 'missing.yaml');
    await expect(loadConfigFile(path)).rejects.toThrow(`cannot read config file ${path}: ENOENT`);
    await expect(loadConfigFile(dir + '/')).rejects.toThrow(/unknown file type/);
  });

  it('refuses an unknown extension', async () => {
    await expect(loadConfigFile(file('a.toml', 'x = 1'))).rejects.toThrow(/a\.toml: unknown file type "\.toml"; use \.yaml, \.yml or \.json/);
  });
});
