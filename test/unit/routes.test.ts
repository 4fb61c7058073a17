import { describe, expect, it } from 'vitest';
import { SockgateError } from '../../shared/errors.js';
import { formatTarget, parseTarget, type Target } from '../../server/routes.js';

describe('parseTarget', () => {
  it.each<[string, Target]>([
    ['tcp://127.0.0.1:22', { kind: 'tcp', host: '127.0.0.1', port: 22 }],
    ['tcp://10.0.0.1:65535', { kind: 'tcp', host: '10.0.0.1', port: 65535 }],
    ['tcp://[::1]:5901', { kind: 'tcp', host: '::1', port: 5901 }],
    ['tcp://[2001:db8::1]:1', { kind: 'tcp', host: '2001:db8::1', port: 1 }],
    ['tcp://[::ffff:127.0.0.1]:80', { kind: 'tcp', host: '::ffff:127.0.0.1', port: 80 }],
    ['tcp://localhost:8080', { kind: 'tcp', host: 'localhost', port: 8080 }],
    ['tcp://db.internal.example.com:5432', { kind: 'tcp', host: 'db.internal.example.com', port: 5432 }],
    ['unix:/run/postgresql/.s.PGSQL.5432', { kind: 'unix', path: '/run/postgresql/.s.PGSQL.5432' }],
    ['unix:///var/run/docker.sock', { kind: 'unix', path: '/var/run/docker.sock' }],
    ['builtin:echo', { kind: 'builtin', name: 'echo' }],
    ['agent:ssh', { kind: 'agent', service: 'ssh' }],
    ['agent:home.db-1_x', { kind: 'agent', service: 'home.db-1_x' }],
  ])('%s', (text, target) => {
    expect(parseTarget(text)).toEqual(target);
  });

  it.each([
    ['', /expected tcp:\/\/host:port, unix:\/path, builtin:echo or agent:SERVICE/],
    ['127.0.0.1:22', /expected tcp:\/\/host:port, unix:\/path, builtin:echo or agent:SERVICE/],
    ['http://example.com:80', /expected tcp:\/\/host:port/],
    ['tcp://127.0.0.1', /expected tcp:\/\/host:port/],
    ['tcp://127.0.0.1:', /expected tcp:\/\/host:port/],
    ['tcp://:22', /expected tcp:\/\/host:port/],
    ['tcp://127.0.0.1:0', /port must be 1\.\.65535/],
    ['tcp://127.0.0.1:65536', /port must be 1\.\.65535/],
    ['tcp://127.0.0.1:123456', /expected tcp:\/\/host:port/],
    ['tcp://::1:22', /expected tcp:\/\/host:port/],
    ['tcp://[::1]', /expected tcp:\/\/host:port/],
    ['tcp://[::g]:22', /expected tcp:\/\/host:port|bad IPv6 address/],
    ['tcp://[1.2.3.4]:22', /bad IPv6 address/],
    ['tcp://host:22/path', /expected tcp:\/\/host:port/],
    ['unix:relative.sock', /must be absolute/],
    ['unix:', /must be absolute/],
    ['unix:/tmp/a\0b', /NUL in path/],
    ['builtin:cat', /expected tcp:\/\/host:port, unix:\/path, builtin:echo or agent:SERVICE/],
    ['TCP://127.0.0.1:22', /expected tcp:\/\/host:port/],
    ['agent:', /an agent service name is 1 to 255 characters/],
    ['agent:a/b', /an agent service name is 1 to 255 characters/],
    [`agent:${'x'.repeat(256)}`, /an agent service name is 1 to 255 characters/],
  ])('refuses %j', (text, pattern) => {
    let err: unknown;
    try {
      parseTarget(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SockgateError);
    expect((err as SockgateError).code).toBe('SOCKGATE_ERR_CONFIG_INVALID');
    expect((err as Error).message).toMatch(pattern);
    // The message quotes what was given, so a config error can be traced to its line.
    expect((err as Error).message).toContain(JSON.stringify(text));
  });

  it('round-trips through formatTarget', () => {
    for (const text of ['tcp://127.0.0.1:22', 'tcp://[::1]:5901', 'tcp://example.com:80', 'unix:/run/x.sock', 'builtin:echo', 'agent:ssh']) {
      expect(formatTarget(parseTarget(text))).toBe(text);
    }
  });
});
