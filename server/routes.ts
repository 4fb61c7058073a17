/** Route targets: only names from config are reachable, and nothing a client sends is joined into a target. */
import { isIP } from 'node:net';
import { ROUTE_NAME_PATTERN } from '../shared/constants.js';
import { SockgateError } from '../shared/errors.js';

export type Target =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  | { readonly kind: 'unix'; readonly path: string }
  /** An in-process echo server on loopback, started by the gateway (the demo's `echo` route). */
  | { readonly kind: 'builtin'; readonly name: 'echo' }
  /** A service a reverse-tunnel agent registered (PROTOCOL 11): reached through the agent's session. */
  | { readonly kind: 'agent'; readonly service: string };

export interface Route {
  readonly name: string;
  readonly target: Target;
}

/**
 * Parse `tcp://host:port` (IPv4, `[IPv6]`, hostname), `unix:/abs/path`, `builtin:echo` and `agent:SERVICE`.
 * Throws SOCKGATE_ERR_CONFIG_INVALID naming what is wrong.
 */
export function parseTarget(text: string): Target {
  const bad = (why: string): never => {
    throw new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', `target ${JSON.stringify(text)}: ${why}`);
  };
  if (text === 'builtin:echo') return { kind: 'builtin', name: 'echo' };
  if (text.startsWith('agent:')) {
    const service = text.slice('agent:'.length);
    if (!ROUTE_NAME_PATTERN.test(service)) bad('an agent service name is 1 to 255 characters of A-Z a-z 0-9 . _ -');
    return { kind: 'agent', service };
  }
  if (text.startsWith('unix:')) {
    const path = text.slice('unix:'.length).replace(/^\/\/(?=\/)/, '');
    if (!path.startsWith('/')) bad('a unix socket path must be absolute (unix:/path/to.sock)');
    if (path.includes('\0')) bad('NUL in path');
    return { kind: 'unix', path };
  }
  if (text.startsWith('tcp://')) {
    const rest = text.slice('tcp://'.length);
    const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:/[\]]+)):(\d{1,5})$/.exec(rest);
    if (!m) bad('expected tcp://host:port');
    const host = m![1] ?? m![2]!;
    if (m![1] !== undefined && isIP(host) !== 6) bad('bad IPv6 address');
    const port = Number(m![3]);
    if (!(port >= 1 && port <= 65535)) bad('port must be 1..65535');
    return { kind: 'tcp', host, port };
  }
  return bad('expected tcp://host:port, unix:/path, builtin:echo or agent:SERVICE');
}

export function formatTarget(t: Target): string {
  switch (t.kind) {
    case 'tcp':
      return `tcp://${isIP(t.host) === 6 ? `[${t.host}]` : t.host}:${t.port}`;
    case 'unix':
      return `unix:${t.path}`;
    case 'builtin':
      return `builtin:${t.name}`;
    case 'agent':
      return `agent:${t.service}`;
  }
}
