/** LiveConfig without a server: the swap, restart-only keys, refusals, and credentials checked again. */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { resolveConfig } from '../../server/config.js';
import { LiveConfig, changedRestartKeys, type LiveAdmitted } from '../../server/reload.js';

const T1 = 'token-one-abcdefghijklmnop';
const T2 = 'token-two-abcdefghijklmnop';

/** An upgrade request as admission reads it: headers and a loopback socket. */
function request(token?: string): IncomingMessage {
  return {
    url: '/mux',
    headers: { host: '127.0.0.1:8080', ...(token && { authorization: `Bearer ${token}` }) },
    socket: { localAddress: '127.0.0.1', encrypted: false },
  } as unknown as IncomingMessage;
}

const base = {
  routes: { a: { target: 'tcp://127.0.0.1:1' } },
  auth: { tokens: [{ name: 'one', token: T1, routes: ['a'] }] },
};

describe('LiveConfig', () => {
  it('checks open sessions’ credentials again: new routes allowed, revoked tokens refused', async () => {
    const live = await LiveConfig.create(resolveConfig(base));
    const admitted = await live.admit(request(T1), '127.0.0.1');
    expect(admitted.ok).toBe(true);
    const cred = live.track(admitted as LiveAdmitted, '127.0.0.1');
    expect(live.authorize(cred, 'a')).toBeUndefined();
    expect(live.authorize(cred, 'b')?.code).toBe('SOCKGATE_ERR_ROUTE_FORBIDDEN');

    await live.reload({ routes: { a: base.routes.a, b: base.routes.a }, auth: { tokens: [{ name: 'one', token: T1, routes: ['a', 'b'] }] } });
    expect(live.authorize(cred, 'b')).toBeUndefined();
    expect(live.config.routes.has('b')).toBe(true);

    const result = await live.reload({ ...base, auth: { tokens: [{ name: 'two', token: T2, routes: ['*'] }] } });
    expect(result.revoked).toBe(1);
    const refused = live.authorize(cred, 'a');
    expect(refused?.code).toBe('SOCKGATE_ERR_ROUTE_FORBIDDEN');
    expect(refused?.message).toContain('SOCKGATE_ERR_AUTH_INVALID');
    expect(refused?.message).not.toContain(T1);
    // The slot counter survives reloads: the admitted session still holds its slot.
    expect(live.counter.total).toBe(1);
    (admitted as LiveAdmitted).release();
    expect(live.counter.total).toBe(0);
  });

  it('refuses a bad config whole and keeps the running one', async () => {
    const live = await LiveConfig.create(resolveConfig(base));
    const before = live.config;
    const generation = live.generation;
    await expect(live.reload({ routes: { a: { target: 'nope' } } })).rejects.toMatchObject({ code: 'SOCKGATE_ERR_CONFIG_INVALID' });
    await expect(live.reload({ auth: { jwt: { jwksFile: '/nonexistent/jwks.json' } } })).rejects.toMatchObject({ code: 'SOCKGATE_ERR_CONFIG_INVALID' });
    expect(live.config).toBe(before);
    expect(live.generation).toBe(generation);
  });

  it('keeps restart-only keys at their running values and names them', async () => {
    const live = await LiveConfig.create(resolveConfig({ ...base, admin: { listen: '127.0.0.1:9090' } }));
    const result = await live.reload({ ...base, listen: '127.0.0.1:9999', trustProxy: true, limits: { handshakeTimeoutMs: 5000, openTimeoutMs: 1234 } });
    expect(result.restartNeeded).toEqual(['listen', 'admin.listen', 'trustProxy', 'limits.handshakeTimeoutMs']);
    expect(live.config.listen).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(live.config.admin?.listen).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(live.config.trustProxy).toBe(false);
    expect(live.config.limits.handshakeTimeoutMs).toBe(10_000);
    expect(live.config.limits.openTimeoutMs).toBe(1234);
    // A resolved config cannot be re-checked against the running addresses: refused instead.
    await expect(live.reload(resolveConfig({ ...base, listen: '127.0.0.1:9999' }))).rejects.toThrow(/listen.*restart/);
  });

  it('applies new session limits to the shared counter', async () => {
    const live = await LiveConfig.create(resolveConfig({ ...base, limits: { maxSessions: 5 } }));
    await live.reload({ ...base, limits: { maxSessions: 1, maxSessionsPerIp: 1 } });
    expect(live.counter.maxSessions).toBe(1);
    expect(live.counter.maxSessionsPerIp).toBe(1);
  });
});

describe('changedRestartKeys', () => {
  it('is empty for equal configs and names each changed key', () => {
    const a = resolveConfig(base);
    expect(changedRestartKeys(a, resolveConfig(base))).toEqual([]);
    expect(changedRestartKeys(a, resolveConfig({ ...base, demo: true, limits: { maxMessageBytes: 70_000 } }))).toEqual(['demo', 'limits.maxMessageBytes']);
  });
});
