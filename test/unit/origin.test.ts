import { describe, expect, it } from 'vitest';
import { LOOPBACK_HOSTS, createOriginPolicy, type OriginPolicyOptions, type OriginRequest } from '../../server/origin.js';
import { SockgateError } from '../../shared/errors.js';

const GW = 'gw.example.com';

function allowed(options: OriginPolicyOptions, origin: string | string[] | undefined, extra: Partial<OriginRequest> & { host?: string } = {}): boolean {
  const headers: Record<string, string | string[] | undefined> = { host: extra.host ?? GW, ...extra.headers };
  if (origin !== undefined) headers.origin = origin;
  const result = createOriginPolicy(options).check({ headers, isTls: extra.isTls });
  if (!result.ok) {
    expect(result.error).toBeInstanceOf(SockgateError);
    expect(result.error.code).toBe('SOCKGATE_ERR_ORIGIN_FORBIDDEN');
    expect(result.error.httpStatus).toBe(403);
  }
  return result.ok;
}

function configError(options: OriginPolicyOptions): string {
  try {
    createOriginPolicy(options);
  } catch (err) {
    expect((err as SockgateError).code).toBe('SOCKGATE_ERR_CONFIG_INVALID');
    return (err as Error).message;
  }
  throw new Error('expected a config error');
}

describe('origin policy: no Origin and same origin', () => {
  it('allows a request with no Origin (not a browser; credentials decide)', () => {
    expect(allowed({ origins: [] }, undefined)).toBe(true);
  });

  it('allows the gateway own origin: http unless the connection is TLS', () => {
    expect(allowed({ origins: [] }, `http://${GW}`)).toBe(true);
    expect(allowed({ origins: [] }, `https://${GW}`)).toBe(false);
    expect(allowed({ origins: [] }, `https://${GW}`, { isTls: true })).toBe(true);
    expect(allowed({ origins: [] }, `http://${GW}`, { isTls: true })).toBe(false);
  });

  it('compares the own origin with ports normalised', () => {
    expect(allowed({ origins: [] }, `http://${GW}:8080`, { host: `${GW}:8080` })).toBe(true);
    expect(allowed({ origins: [] }, `http://${GW}`, { host: `${GW}:80` })).toBe(true);
    expect(allowed({ origins: [] }, `https://${GW}`, { host: `${GW}:443`, isTls: true })).toBe(true);
    expect(allowed({ origins: [] }, `http://${GW}:8081`, { host: `${GW}:8080` })).toBe(false);
    expect(allowed({ origins: [] }, `http://GW.Example.COM`, { host: GW })).toBe(true);
  });

  it('reads X-Forwarded-Proto only with trustProxy', () => {
    const proxied = { headers: { 'x-forwarded-proto': 'https' } };
    expect(allowed({ origins: [] }, `https://${GW}`, proxied)).toBe(false);
    expect(allowed({ origins: [], trustProxy: true }, `https://${GW}`, proxied)).toBe(true);
    expect(allowed({ origins: [], trustProxy: true }, `http://${GW}`, proxied)).toBe(false);
    expect(allowed({ origins: [], trustProxy: true }, `https://${GW}`, { headers: { 'x-forwarded-proto': 'https, http' } })).toBe(true);
    // A value that is not a scheme is ignored: the connection decides.
    expect(allowed({ origins: [], trustProxy: true }, `http://${GW}`, { headers: { 'x-forwarded-proto': 'gopher' } })).toBe(true);
  });

  it('refuses when there is no usable Host to compare with', () => {
    expect(createOriginPolicy({ origins: [] }).check({ headers: { origin: `http://${GW}` } }).ok).toBe(false);
    expect(allowed({ origins: [] }, 'http://a@b', { host: 'a@b' })).toBe(false);
  });
});

describe('origin policy: the list', () => {
  const exact = { origins: ['https://app.example.com', 'http://localhost:3000/', 'chrome-extension://abcdefghijklmnop'] };

  it('exact entries: scheme, host and port after normalisation', () => {
    expect(allowed(exact, 'https://app.example.com')).toBe(true);
    expect(allowed(exact, 'https://APP.example.com')).toBe(true);
    expect(allowed(exact, 'https://app.example.com:443')).toBe(true);
    expect(allowed(exact, 'https://app.example.com/')).toBe(true);
    expect(allowed(exact, 'http://localhost:3000')).toBe(true);
    expect(allowed(exact, 'chrome-extension://abcdefghijklmnop')).toBe(true);
    expect(allowed(exact, 'http://app.example.com')).toBe(false);
    expect(allowed(exact, 'https://app.example.com:8443')).toBe(false);
    expect(allowed(exact, 'http://localhost:3001')).toBe(false);
    expect(allowed(exact, 'http://localhost')).toBe(false);
    expect(allowed(exact, 'https://app.example.com.evil.com')).toBe(false);
    expect(allowed(exact, 'https://evil-app.example.com')).toBe(false);
    expect(allowed(exact, 'https://app.example.com.')).toBe(false);
  });

  it('refuses malformed Origin values and two Origin headers', () => {
    for (const bad of ['', 'app.example.com', 'https://', 'https://app.example.com/path', 'https://u:p@app.example.com', 'https://app.example.com?x', 'https://app.example.com:99999']) {
      expect(allowed(exact, bad), bad).toBe(false);
    }
    expect(allowed(exact, ['https://app.example.com', 'https://app.example.com'])).toBe(false);
  });

  it('wildcards: one or more labels, same scheme and port, never the bare domain or a look-alike', () => {
    const w = { origins: ['https://*.example.com'] };
    expect(allowed(w, 'https://app.example.com')).toBe(true);
    expect(allowed(w, 'https://a.b.example.com')).toBe(true);
    expect(allowed(w, 'https://APP.Example.Com:443')).toBe(true);
    expect(allowed(w, 'https://example.com')).toBe(false);
    expect(allowed(w, 'https://evil-example.com')).toBe(false);
    expect(allowed(w, 'https://evilexample.com')).toBe(false);
    expect(allowed(w, 'https://example.com.evil.com')).toBe(false);
    expect(allowed(w, 'https://app.example.com.evil.com')).toBe(false);
    expect(allowed(w, 'http://app.example.com')).toBe(false);
    expect(allowed(w, 'https://app.example.com:8443')).toBe(false);
    expect(allowed(w, 'https://.example.com')).toBe(false);

    const withPort = { origins: ['http://*.example.com:8080'] };
    expect(allowed(withPort, 'http://app.example.com:8080')).toBe(true);
    expect(allowed(withPort, 'http://app.example.com')).toBe(false);
  });

  it('null is refused unless listed', () => {
    expect(allowed({ origins: ['https://*.example.com'] }, 'null')).toBe(false);
    expect(allowed({ origins: ['null'] }, 'null')).toBe(true);
    expect(allowed({ origins: ['null'] }, 'https://app.example.com')).toBe(false);
  });

  it("'*' allows any origin, null included", () => {
    const policy = createOriginPolicy({ origins: ['*'] });
    expect(policy.allowsAnyOrigin).toBe(true);
    expect(allowed({ origins: ['*'] }, 'https://evil.example')).toBe(true);
    expect(allowed({ origins: ['*'] }, 'null')).toBe(true);
    expect(createOriginPolicy({ origins: [] }).allowsAnyOrigin).toBe(false);
  });

  it('names the bad entry when the list is invalid', () => {
    const cases: [string, RegExp][] = [
      ['app.example.com', /origins\[1\] "app\.example\.com": expected scheme:\/\/host/],
      ['https://app.example.com/path', /origins\[1\].*no path/],
      ['https://*example.com', /origins\[1\].*whole first label/],
      ['https://a.*.example.com', /whole first label/],
      ['https://*.*.example.com', /whole first label/],
      ['https://*.com', /at least two labels/],
      ['https://*.1.2.3.4', /not an IP address/],
      ['ftp://*.example.com', /whole first label/],
      ['https://*.example.com/x', /whole first label/],
      ['', /expected scheme/],
    ];
    for (const [entry, message] of cases) {
      expect(configError({ origins: ['https://ok.example.com', entry] }), entry).toMatch(message);
    }
  });
});

describe('origin policy: allowedHosts (DNS rebinding)', () => {
  it('refuses a Host not in the list, whatever the Origin', () => {
    const options = { origins: [], allowedHosts: LOOPBACK_HOSTS };
    expect(allowed(options, undefined, { host: '127.0.0.1:8080' })).toBe(true);
    expect(allowed(options, 'http://localhost:8080', { host: 'localhost:8080' })).toBe(true);
    expect(allowed(options, 'http://[::1]:8080', { host: '[::1]:8080' })).toBe(true);
    // A rebinding page is same-origin with itself; the Host gives it away.
    expect(allowed(options, 'http://attacker.example:8080', { host: 'attacker.example:8080' })).toBe(false);
    expect(allowed(options, undefined, { host: 'attacker.example' })).toBe(false);
    expect(createOriginPolicy(options).check({ headers: {} }).ok).toBe(false);
  });

  it('wildcard host rules and checked entries', () => {
    const options = { origins: [], allowedHosts: ['gw.example.com', '*.internal.example'] };
    expect(allowed(options, undefined, { host: 'GW.example.com:443' })).toBe(true);
    expect(allowed(options, undefined, { host: 'a.internal.example' })).toBe(true);
    expect(allowed(options, undefined, { host: 'internal.example' })).toBe(false);
    expect(allowed(options, undefined, { host: 'evilinternal.example' })).toBe(false);
    for (const bad of ['gw.example.com:443', 'https://gw.example.com', '::1', '*.com', '']) {
      expect(configError({ origins: [], allowedHosts: [bad] }), bad).toMatch(/allowedHosts\[0\]/);
    }
  });
});
