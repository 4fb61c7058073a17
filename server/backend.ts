/** Connecting to a backend socket, with a timeout and errors mapped to registry codes (errno kept). */
import net from 'node:net';
import { SockgateError, backendCodeForErrno } from '../shared/errors.js';
import type { Target } from './routes.js';

export interface ConnectOptions {
  /** Give up connecting after this many milliseconds (SOCKGATE_ERR_BACKEND_TIMEOUT). */
  timeoutMs: number;
  /** Resolves a builtin target to a real loopback address (the gateway owns the builtin servers). */
  resolveBuiltin?: (name: 'echo') => { host: string; port: number };
  /** Read through this instead of 'data' events (server/read-buffer.ts); absent: ordinary reads. */
  onread?: net.OnReadOpts;
}

/** The error a failed or broken backend socket reports: code from errno, reason starting with the errno. */
export function backendError(err: unknown, phase: 'connect' | 'open'): SockgateError {
  const errno = (err as NodeJS.ErrnoException | undefined)?.code;
  const text = err instanceof Error ? err.message : String(err);
  return new SockgateError(backendCodeForErrno(errno, phase), errno ? `${errno}: ${text}` : text, { cause: err });
}

/**
 * Open a socket to the target. Resolves once connected; rejects with a SockgateError. The socket has no
 * timeout and no listeners left from connecting; the caller owns it from then on.
 */
export function connectBackend(target: Target, opts: ConnectOptions): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let socket: net.Socket;
    // allowHalfOpen: a backend's EOF must not end our side too; FIN travels each way on its own (PROTOCOL 4.3).
    const onread = opts.onread && { onread: opts.onread };
    if (target.kind === 'unix') socket = net.connect({ path: target.path, allowHalfOpen: true, ...onread });
    else if (target.kind === 'tcp') socket = net.connect({ host: target.host, port: target.port, allowHalfOpen: true, ...onread });
    else if (target.kind === 'agent') {
      // Agent services are streams on an agent's session, not sockets: the gateway opens them through its
      // agent registry (server/agent-endpoint.ts), never here.
      return reject(new SockgateError('SOCKGATE_ERR_ROUTE_UNAVAILABLE', `agent:${target.service} is reached through an agent session`));
    } else {
      const addr = opts.resolveBuiltin?.(target.name);
      if (!addr) return reject(new SockgateError('SOCKGATE_ERR_ROUTE_UNAVAILABLE', `builtin:${target.name} is not running`));
      socket = net.connect({ ...addr, allowHalfOpen: true, ...onread });
    }
    const timer = setTimeout(() => {
      cleanup();
      socket.destroy();
      reject(new SockgateError('SOCKGATE_ERR_BACKEND_TIMEOUT', `ETIMEDOUT: no connection within ${opts.timeoutMs} ms`));
    }, opts.timeoutMs);
    const onError = (err: Error) => {
      cleanup();
      socket.destroy();
      reject(backendError(err, 'connect'));
    };
    const onConnect = () => {
      cleanup();
      if (target.kind === 'tcp' || target.kind === 'builtin') socket.setNoDelay(true);
      resolve(socket);
    };
    function cleanup() {
      clearTimeout(timer);
      socket.off('error', onError);
      socket.off('connect', onConnect);
    }
    socket.once('error', onError);
    socket.once('connect', onConnect);
  });
}
