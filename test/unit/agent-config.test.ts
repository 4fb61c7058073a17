/** server/agent-config.ts: the agent's config, its defaults with units, its errors, and the reconnect backoff. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { SockgateError } from '../../shared/errors.js';
import { AGENT_DEFAULTS, backoffDelay, resolveAgentConfig } from '../../server/agent-config.js';

const TOKEN = 'agent-token-0123456789abcdef';
const base = { gateway: 'wss://gw.example.com', token: TOKEN, services: { ssh: 'tcp://127.0.0.1:22' } };
const dir = mkdtempSync(join(tmpdir(), 'sockgate-agent-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function invalid(input: unknown, env: Record<string, string> = {}): string {
  try {
    resolveAgentConfig(input, env);
  } catch (err) {
    expect(err).toBeInstanceOf(SockgateError);
    expect((err as SockgateError).code).toBe('SOCKGATE_ERR_CONFIG_INVALID');
    return (err as Error).message;
  }
  throw new Error('accepted');
}

describe('resolveAgentConfig', () => {
  it('fills the defaults', () => {
    const c = resolveAgentConfig(base);
    expect(c.services).toEqual(new Map([['ssh', { kind: 'tcp', host: '127.0.0.1', port: 22 }]]));
    expect(c.reconnect).toEqual({ initialDelayMs: 500, maxDelayMs: 30_000, multiplier: 2, jitter: 0.5 });
    expect(c).toMatchObject({ pingIntervalMs: 15_000, pingTimeoutMs: 10_000, connectTimeoutMs: 10_000, openTimeoutMs: 10_000, maxStreams: 1024, logLevel: 'info' });
    expect(AGENT_DEFAULTS.reconnect).toEqual(c.reconnect);
  });

  it('takes the token from tokenFile, or SOCKGATE_TOKEN', () => {
    const file = join(dir, 'token');
    writeFileSync(file, `  ${TOKEN}\n`);
    expect(resolveAgentConfig({ ...base, token: undefined, tokenFile: file }).token).toBe(TOKEN);
    expect(resolveAgentConfig({ ...base, token: undefined }, { SOCKGATE_TOKEN: TOKEN }).token).toBe(TOKEN);
  });

  it('names every bad key, and never quotes the token', () => {
    // Schema errors (types, bounds) first, all at once; then the checks that need valid types.
    const schema = invalid({ ...base, reconnect: { jitter: 2, multiplier: 0.5 }, pingTimeoutMs: 1.5 });
    expect(schema).toContain('reconnect.jitter: must be at most 1');
    expect(schema).toContain('reconnect.multiplier: must be at least 1');
    expect(schema).toContain('pingTimeoutMs: expected a whole number (milliseconds)');
    expect(invalid({ ...base, reconnect: { initialDelayMs: 10, maxDelayMs: 5 } })).toContain('reconnect.maxDelayMs: must be at least reconnect.initialDelayMs');
    const second = invalid({ gateway: 'ftp://x', token: 'short secret', services: { ssh: 'tcp://127.0.0.1', 'a/b': 'tcp://127.0.0.1:1', echo: 'builtin:echo' } });
    expect(second).toContain('gateway: ');
    expect(second).toContain('token: must be at least 16 characters');
    expect(second).toContain('services.ssh: ');
    expect(second).toContain('services.a/b: a service name');
    expect(second).toContain('services.echo: builtin:echo: an agent exposes tcp://host:port or unix:/path');
    expect(second).not.toContain('short secret');
  });

  it('refuses unknown keys, a missing token, no services, and both token and tokenFile', () => {
    expect(invalid({ ...base, pingIntervalMS: 5 })).toContain('pingIntervalMS: unknown key');
    expect(invalid({ ...base, reconnect: { delay: 1 } })).toContain('reconnect.delay: unknown key');
    expect(invalid({ ...base, token: undefined })).toContain('token: missing');
    expect(invalid({ ...base, services: {} })).toContain('services: expose at least one service');
    expect(invalid({ ...base, tokenFile: '/nonexistent' })).toContain('token: give token or tokenFile, not both');
    expect(invalid({ ...base, token: undefined, tokenFile: join(dir, 'missing') })).toContain('tokenFile: cannot read');
    expect(invalid({ ...base, gateway: 'wss://user:pw@gw.example.com' })).toContain('put the token in --token');
  });
});

describe('backoffDelay', () => {
  const reconnect = { initialDelayMs: 500, maxDelayMs: 30_000, multiplier: 2, jitter: 0.5 };

  it('grows exponentially up to the cap, without jitter at random() = 0', () => {
    const delays = Array.from({ length: 10 }, (_, i) => backoffDelay(reconnect, i, () => 0));
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000]);
    expect(backoffDelay(reconnect, 10_000, () => 0)).toBe(30_000);
  });

  it('draws the jitter fraction at random: between (1 - jitter) and 1 times the delay', () => {
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(reconnect, 3);
      expect(d).toBeGreaterThanOrEqual(2000);
      expect(d).toBeLessThanOrEqual(4000);
    }
    expect(backoffDelay({ ...reconnect, jitter: 0 }, 3, () => 0.99)).toBe(4000);
    expect(backoffDelay({ ...reconnect, jitter: 1 }, 3, () => 0.5)).toBe(2000);
  });
});
