/**
 * Agent credentials (server/auth.ts `auth.agents`, createAgentAuthenticator) and the config rules for `agent:`
 * targets (server/config.ts).
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SockgateError } from '../../shared/errors.js';
import { authConfigSchema, createAgentAuthenticator } from '../../server/auth.js';
import { resolveConfig } from '../../server/config.js';

const TOKEN = 'agent-token-0123456789abcdef';
const OTHER = 'other-token-0123456789abcdef';
const sha = (t: string): string => createHash('sha256').update(t).digest('hex');

function thrown(f: () => unknown): SockgateError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(SockgateError);
    return err as SockgateError;
  }
  throw new Error('did not throw');
}

describe('auth.agents', () => {
  it('authenticates an agent by token or digest, and says which services it may register', () => {
    const auth = createAgentAuthenticator({
      agents: [
        { name: 'home', token: TOKEN, services: ['ssh', 'db'] },
        { name: 'lab', tokenSha256: sha(OTHER), services: ['vnc'] },
      ],
    });
    expect(auth.configured).toBe(true);
    const home = auth.authenticate(TOKEN);
    expect(home).toMatchObject({ name: 'home', kind: 'agent' });
    expect(home.allows('ssh')).toBe(true);
    expect(home.allows('vnc')).toBe(false);
    expect(auth.authenticate(OTHER).allows('vnc')).toBe(true);
  });

  it('refuses a missing, unknown or oversized token with 401 codes, and every agent when none are configured', () => {
    const auth = createAgentAuthenticator({ agents: [{ name: 'home', token: TOKEN, services: ['ssh'] }] });
    expect(thrown(() => auth.authenticate(undefined))).toMatchObject({ code: 'SOCKGATE_ERR_AUTH_MISSING', httpStatus: 401 });
    expect(thrown(() => auth.authenticate('not-a-known-agent-token'))).toMatchObject({ code: 'SOCKGATE_ERR_AUTH_INVALID', httpStatus: 401 });
    expect(thrown(() => auth.authenticate('x'.repeat(9000))).code).toBe('SOCKGATE_ERR_AUTH_INVALID');
    const none = createAgentAuthenticator(undefined);
    expect(none.configured).toBe(false);
    expect(thrown(() => none.authenticate(TOKEN)).message).toContain('no agent credentials configured');
  });

  it('client tokens are not agent tokens, and the same token may not be both', () => {
    const auth = createAgentAuthenticator({ tokens: [{ name: 'client', token: OTHER, routes: ['*'] }], agents: [{ name: 'home', token: TOKEN, services: ['ssh'] }] });
    expect(thrown(() => auth.authenticate(OTHER)).code).toBe('SOCKGATE_ERR_AUTH_INVALID');
    const both = authConfigSchema.safeParse({ tokens: [{ name: 'c', token: TOKEN, routes: ['*'] }], agents: [{ name: 'a', tokenSha256: sha(TOKEN), services: ['ssh'] }] });
    expect(both.success).toBe(false);
    expect(both.error?.issues[0]?.message).toBe('same token as tokens[0]');
    expect(both.error?.issues[0]?.path).toEqual(['agents', 0]);
  });

  it.each([
    [{ name: 'a', token: TOKEN, services: [] }, /services: .*(at least 1|>=1)/],
    [{ name: 'a', token: TOKEN, services: ['*'] }, /not a service name/],
    [{ name: 'a', token: TOKEN, services: ['ssh', 'ssh'] }, /listed twice/],
    [{ name: 'a', token: TOKEN, tokenSha256: sha(TOKEN), services: ['ssh'] }, /exactly one of token or tokenSha256/],
    [{ name: 'a', token: 'short', services: ['ssh'] }, /token: .*(at least 16|>=16)/],
    [{ name: 'a', token: TOKEN, services: ['ssh'], routes: ['ssh'] }, /routes/],
  ])('refuses a bad entry %#', (entry, pattern) => {
    const err = thrown(() => createAgentAuthenticator({ agents: [entry] } as never));
    expect(err.code).toBe('SOCKGATE_ERR_CONFIG_INVALID');
    expect(err.message).toMatch(/^invalid configuration: auth\.agents\[0\]/);
    expect(err.message).toMatch(pattern);
    expect(err.message).not.toContain(TOKEN);
  });
});

describe('routes with agent: targets', () => {
  const agents = [{ name: 'home', token: TOKEN, services: ['ssh'] }];

  it('resolve when an agent credential may register the service', () => {
    const config = resolveConfig({ routes: { homessh: { target: 'agent:ssh' } }, auth: { agents } });
    expect(config.routes.get('homessh')?.target).toEqual({ kind: 'agent', service: 'ssh' });
    // Agent credentials are not client credentials: clients of a loopback gateway stay anonymous.
    expect(config.anonymous).toBe('loopback');
  });

  it('are refused when no agent credential may register the service', () => {
    const err = thrown(() => resolveConfig({ routes: { db: { target: 'agent:db' } }, auth: { agents } }));
    expect(err.message).toContain('routes.db.target: no auth.agents entry may register the service "db"');
    expect(thrown(() => resolveConfig({ routes: { db: { target: 'agent:db' } } })).message).toContain('routes.db.target');
  });
});
