/**
 * Raw mode (`GET /raw/<route>`, PROTOCOL 10): one WebSocket carries one backend connection's bytes each way in
 * binary messages, as websockify does, so noVNC and xterm.js's attach addon work unchanged. No half-close (a
 * WebSocket has none): the backend's EOF closes the WebSocket with 1000, a WebSocket close ends the backend.
 *
 * Memory is bounded both ways with the Node stream contract:
 * - backend -> client: bytes handed to ws.send() whose callback has not fired (ws calls it once they left for
 *   the kernel) are counted; past maxTransportBufferedBytes the backend is paused, below half it resumes.
 *   Backend sockets read through one shared buffer into recycled ones (server/read-buffer.ts), so a busy
 *   connection allocates nothing per read; the count is of the memory held, not just of the bytes in it.
 * - client -> backend: when backend.write() returns false the WebSocket is paused (ws stops reading its TCP
 *   socket) until 'drain'. It is also paused while the backend connects, so nothing piles up meanwhile.
 */
import type { OnReadOpts } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import { WebSocket, type RawData } from 'ws';
import { ERRORS, SockgateError } from '../shared/errors.js';
import { backendError } from './backend.js';
import type { GatewayLimits } from './config.js';
import { IdleTimer } from './limits.js';
import { ownMemory, pooledReads, type ReadChunk } from './read-buffer.js';
import type { StreamMetrics } from './metrics.js';
import { formatTarget, type Route, type Target } from './routes.js';
import { closeReasonBytes, toBuffer } from './ws-util.js';

export interface RawContext {
  /**
   * connectBackend with the open timeout and builtin resolution; rejects with a SockgateError. A backend socket
   * reads through `onread`; an agent's stream (a Duplex, server/stream-socket.ts) ignores it and emits 'data'.
   */
  connect(target: Target, onread?: OnReadOpts): Promise<Duplex>;
  /** idleTimeoutMs: close (4002) after this many milliseconds without bytes either way; 0 or absent: off. */
  limits: Pick<GatewayLimits, 'maxTransportBufferedBytes'> & Partial<Pick<GatewayLimits, 'idleTimeoutMs'>>;
  log: FastifyBaseLogger;
  /** Counts the connection as one stream of its route (server/metrics.ts); absent: not measured. */
  metrics?: StreamMetrics;
}

/**
 * After the WebSocket closed, the backend gets this long (ms) to finish its side after our end() before it is
 * destroyed: a backend that never closes must not hold a socket forever.
 */
export const BACKEND_END_GRACE_MS = 2000;

/** Bridge one upgraded WebSocket to the route's backend. Never throws; everything it opens is released on close. */
export function handleRawConnection(
  ws: WebSocket,
  route: Route,
  ctx: RawContext,
  meta: { remoteAddress: string; principal?: string },
): void {
  const startedAt = performance.now();
  const log = ctx.log.child({ raw: route.name, remote: meta.remoteAddress, ...(meta.principal !== undefined && { principal: meta.principal }) });
  const highWater = ctx.limits.maxTransportBufferedBytes;
  const lowWater = Math.floor(highWater / 2);

  let backend: Duplex | undefined;
  /** Messages that arrived before the backend connected: at most what ws had read when it was paused. */
  let early: Buffer[] = [];
  /** Bytes handed to ws.send() whose callback has not fired yet. */
  let inFlight = 0;
  let backendPaused = false;
  let awaitingBackendDrain = false;
  let wsClosed = false;
  let failure: SockgateError | undefined;
  const bytes = { in: 0, out: 0 };
  /** Given by metrics when the backend connection opens; called when the WebSocket closes. */
  let measured: (() => void) | undefined;

  ws.binaryType = 'nodebuffer';
  ws.pause();
  // Bytes either way keep the connection alive; none for idleTimeoutMs closes it like a mux session (4002).
  const idle = ctx.limits.idleTimeoutMs
    ? new IdleTimer(ctx.limits.idleTimeoutMs, () => {
        failure ??= new SockgateError('SOCKGATE_ERR_SESSION_IDLE_TIMEOUT');
        closeWs(ERRORS.SOCKGATE_ERR_SESSION_IDLE_TIMEOUT.closeCode, ERRORS.SOCKGATE_ERR_SESSION_IDLE_TIMEOUT.message);
      })
    : undefined;

  ws.on('message', (data: RawData, isBinary: boolean) => {
    // After we started closing, ws may still deliver what it had already read: drop it.
    if (ws.readyState !== WebSocket.OPEN) return;
    if (!isBinary) {
      closeWs(1003, ERRORS.SOCKGATE_ERR_PROTOCOL_TEXT_FRAME.message);
      return;
    }
    const chunk = toBuffer(data);
    if (chunk.length === 0) return;
    idle?.touch();
    bytes.in += chunk.length;
    if (backend) writeToBackend(backend, chunk);
    else early.push(chunk);
  });
  ws.on('error', (err: Error) => log.debug({ err }, 'raw websocket error'));
  ws.on('close', (code: number, reason: Buffer) => {
    wsClosed = true;
    idle?.stop();
    measured?.();
    early = [];
    if (backend) endBackend(backend);
    log.info(
      {
        target: formatTarget(route.target),
        bytesIn: bytes.in,
        bytesOut: bytes.out,
        ms: Math.round(performance.now() - startedAt),
        code,
        reason: reason.toString(),
        err: failure?.code,
      },
      'raw connection closed',
    );
  });

  /** Backend bytes toward the client. False: stop reading until the client has taken some (resume()). */
  function fromBackend(chunk: ReadChunk): boolean {
    if (ws.readyState !== WebSocket.OPEN) {
      chunk.release(); // closing or closed: nobody to send to
      return true;
    }
    idle?.touch();
    bytes.out += chunk.bytes.length;
    inFlight += chunk.held;
    ws.send(chunk.bytes, { binary: true }, () => {
      // Called with an error too once the WebSocket closed, so the count always comes back down.
      chunk.release();
      inFlight -= chunk.held;
      if (backendPaused && inFlight <= lowWater && !wsClosed) {
        backendPaused = false;
        backend?.resume();
      }
    });
    if (inFlight >= highWater) backendPaused = true;
    return !backendPaused;
  }

  ctx.connect(route.target, pooledReads(fromBackend)).then(connected, (err: unknown) => {
    failure = err instanceof SockgateError ? err : new SockgateError('SOCKGATE_ERR_INTERNAL', String(err), { cause: err });
    if (!(err instanceof SockgateError)) log.error({ err }, 'backend connect failed unexpectedly');
    else log.info({ err: failure.code, reason: failure.message }, 'raw backend connect failed');
    if (!wsClosed) ctx.metrics?.failed(route.name, failure.code);
    closeWs(1011, closeReason(failure));
  });

  function connected(socket: Duplex): void {
    if (wsClosed) {
      socket.destroy(); // the client left while we were connecting
      return;
    }
    backend = socket;
    measured = ctx.metrics?.opened(
      route.name,
      {
        get toBackend() {
          return bytes.in;
        },
        get toClient() {
          return bytes.out;
        },
      },
      performance.now() - startedAt,
    );
    // An agent's stream emits 'data'; a backend socket reads through pooledReads and never does.
    socket.on('data', (data: Buffer) => {
      if (!fromBackend({ bytes: data, held: data.length, release: ownMemory })) socket.pause();
    });
    // Reads that arrived before this point may have paused the socket with nobody to resume it yet.
    if (!backendPaused) socket.resume();
    // Raw mode has no half-close: the backend's EOF ends the connection both ways. ws sends the close frame after
    // the data already queued, so the client receives every byte first; end() likewise flushes what the client
    // sent before it.
    socket.on('end', () => {
      closeWs(1000, 'backend closed the connection');
      // Already ended when the client closed first (endBackend): a second end() only builds an error to drop.
      if (!socket.writableEnded) socket.end();
    });
    socket.on('error', (err: Error) => {
      failure ??= backendError(err, 'open');
      closeWs(1011, closeReason(failure));
      socket.destroy();
    });
    socket.on('close', () => {
      if (!wsClosed) closeWs(failure ? 1011 : 1000, failure ? closeReason(failure) : 'backend closed the connection');
    });
    log.info({ target: formatTarget(route.target), connectMs: Math.round(performance.now() - startedAt) }, 'raw connection open');
    const held = early;
    early = [];
    for (const chunk of held) writeToBackend(socket, chunk);
    if (!awaitingBackendDrain) ws.resume();
  }

  function writeToBackend(socket: Duplex, chunk: Buffer): void {
    if (socket.write(chunk) || awaitingBackendDrain) return;
    awaitingBackendDrain = true;
    ws.pause();
    socket.once('drain', () => {
      awaitingBackendDrain = false;
      if (!wsClosed) ws.resume();
    });
  }

  function endBackend(socket: Duplex): void {
    if (socket.destroyed) return;
    socket.end();
    // Read and discard until the backend's own EOF, so a paused socket can still see it and close.
    backendPaused = false;
    socket.resume();
    const timer = setTimeout(() => socket.destroy(), BACKEND_END_GRACE_MS);
    socket.once('close', () => clearTimeout(timer));
  }

  function closeWs(code: number, reason: string): void {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.close(code, closeReasonBytes(reason));
    // The client's close frame must be read to finish the handshake, even if we had paused reading.
    ws.resume();
  }
}

/**
 * A close reason for a failed backend: its errno first (PROTOCOL 7: `ECONNREFUSED: connect ECONNREFUSED ...`),
 * without the code's generic message; otherwise the whole message.
 */
function closeReason(err: SockgateError): string {
  const prefix = `${ERRORS[err.code].message}: `;
  const detail = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
  return /^E[A-Z0-9_]+: /.test(detail) ? detail : err.message;
}
