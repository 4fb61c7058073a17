/** server/agent-registry.ts: the newest registration wins; the services list an agent's upgrade names. */
import { describe, expect, it } from 'vitest';
import { MAX_AGENT_SERVICES } from '../../shared/constants.js';
import { SockgateError } from '../../shared/errors.js';
import type { Stream } from '../../shared/session.js';
import { LocalAgentRegistry, parseAgentServices, type AgentLink } from '../../server/agent-registry.js';

interface FakeLink extends AgentLink {
  replacedBy: { service: string; by: string }[];
  opened: string[];
}

function link(id: string, services: string[], registry?: LocalAgentRegistry): FakeLink {
  const l: FakeLink = {
    id,
    name: `name-${id}`,
    services,
    replacedBy: [],
    opened: [],
    open(service) {
      l.opened.push(service);
      return { id: 2, route: service } as unknown as Stream;
    },
    replace(service, by) {
      l.replacedBy.push({ service, by: by.id });
      // What the endpoint does: the session closes, which unregisters the link.
      void registry?.unregister(l);
    },
  };
  return l;
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as SockgateError).code;
  }
  throw new Error('did not reject');
}

describe('LocalAgentRegistry', () => {
  it('registers, looks up, opens streams on and unregisters an agent', async () => {
    const r = new LocalAgentRegistry();
    const a = link('a', ['ssh', 'db']);
    await r.register(a);
    expect(await r.lookup('ssh')).toBe(a);
    expect(await r.lookup('db')).toBe(a);
    expect(await r.lookup('vnc')).toBeUndefined();
    await r.openStream('db');
    expect(a.opened).toEqual(['db']);
    await r.unregister(a);
    expect(await r.lookup('ssh')).toBeUndefined();
    expect(r.services.size).toBe(0);
  });

  it('refuses a stream to a service nobody serves with SOCKGATE_ERR_ROUTE_UNAVAILABLE', async () => {
    const r = new LocalAgentRegistry();
    expect(await code(r.openStream('ssh'))).toBe('SOCKGATE_ERR_ROUTE_UNAVAILABLE');
  });

  it('the newest registration wins: an older agent holding any of the services is replaced, all its services with it', async () => {
    const r = new LocalAgentRegistry();
    const a = link('a', ['ssh', 'db'], r);
    const b = link('b', ['db', 'vnc'], r);
    await r.register(a);
    await r.register(b);
    expect(a.replacedBy).toEqual([{ service: 'db', by: 'b' }]);
    expect(await r.lookup('db')).toBe(b);
    expect(await r.lookup('vnc')).toBe(b);
    // a's other service went with it: an agent is registered whole or not at all.
    expect(await r.lookup('ssh')).toBeUndefined();
    expect(b.replacedBy).toEqual([]);
  });

  it('a replaced agent that unregisters late does not take the newer agent\'s services with it', async () => {
    const r = new LocalAgentRegistry();
    const a = link('a', ['ssh']); // its session closes later, not from replace()
    const b = link('b', ['ssh']);
    await r.register(a);
    await r.register(b);
    await r.unregister(a);
    expect(await r.lookup('ssh')).toBe(b);
  });

  it('replaces each older agent once, even when it held several of the new services', async () => {
    const r = new LocalAgentRegistry();
    const a = link('a', ['x', 'y']);
    const c = link('c', ['z']);
    const b = link('b', ['x', 'y', 'z']);
    await r.register(a);
    await r.register(c);
    await r.register(b);
    expect(a.replacedBy).toHaveLength(1);
    expect(c.replacedBy).toEqual([{ service: 'z', by: 'b' }]);
    expect([...r.services.values()].every((l) => l === b)).toBe(true);
  });
});

describe('parseAgentServices (PROTOCOL 11.3)', () => {
  it('reads ?services=a,b', () => {
    expect(parseAgentServices('/agent?services=ssh,db')).toEqual(['ssh', 'db']);
    expect(parseAgentServices('/agent?x=1&services=a.b_c-d#frag')).toEqual(['a.b_c-d']);
    expect(parseAgentServices('/agent?services=a%2Cb')).toEqual(['a', 'b']);
  });

  it.each([
    ['/agent', /list the services/],
    ['/agent?services=', /"" is not a service name/],
    ['/agent?services=a,,b', /"" is not a service name/],
    ['/agent?services=a/b', /"a\/b" is not a service name/],
    ['/agent?services=a,a', /"a" is listed twice/],
    ['/agent?services=a&services=b', /given more than once/],
    [`/agent?services=${Array.from({ length: MAX_AGENT_SERVICES + 1 }, (_, i) => `s${i}`).join(',')}`, /at most 64 services/],
    [`/agent?services=${'x'.repeat(300)}`, /is not a service name/],
  ])('refuses %s with SOCKGATE_ERR_AGENT_BAD_SERVICES', (url, pattern) => {
    let err: unknown;
    try {
      parseAgentServices(url);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SockgateError);
    expect((err as SockgateError).code).toBe('SOCKGATE_ERR_AGENT_BAD_SERVICES');
    expect((err as SockgateError).httpStatus).toBe(400);
    expect((err as Error).message).toMatch(pattern);
    expect((err as Error).message.length).toBeLessThan(300);
  });

  it('takes exactly MAX_AGENT_SERVICES', () => {
    const names = Array.from({ length: MAX_AGENT_SERVICES }, (_, i) => `s${i}`);
    expect(parseAgentServices(`/agent?services=${names.join(',')}`)).toEqual(names);
  });
});
