/**
 * Dialing a gateway from Node tools (the agent, `forward`, `connect`): a `ws` WebSocket offering `sockgate.v1`,
 * the token in `Authorization: Bearer` (headers are not logged, unlike query strings), and the shared engine over
 * the same WsTransport the gateway runs. A refused upgrade becomes a SockgateError with the gateway's own code and
 * the HTTP status, so a caller can tell a wrong token (401: no use retrying) from an overloaded gateway (503).
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { WebSocket } from 'ws';
import { MAX_FRAME_BYTES, SUBPROTOCOL } from '../shared/constants.js';
import { SockgateError, isErrorCode } from '../shared/errors.js';
import { Session, type SessionOptions, type Stream } from '../shared/session.js';
import { WsTransport } from './mux.js';
import type { ReadGate } from './read-gate.js';

/** The most of a refusal's body read for its `{ code, message }`, in bytes. */
const MAX_REFUSAL_BODY_BYTES = 4096;

/** The engine's default for maxTransportBufferedBytes, in bytes (shared/session.ts). */
const DEFAULT_MAX_TRANSPORT_BUFFERED_BYTES = 1024 * 1024;

/** A failed dial: the registry code (the gateway's, for a refusal) and the HTTP status when there was one. */
export type DialError = SockgateError & { readonly status?: number };

export interface DialOptions {
  /** The gateway's base URL: `ws://`, `wss://` (`http(s)://` accepted), with or without a path prefix. */
  gateway: string;
  /** The endpoint below the base URL: `/mux` or `/agent`. */
  path: string;
  /** Query parameters to add (e.g. the agent's `services`). */
  query?: Record<string, string>;
  /** Sent as `Authorization: Bearer <token>`. */
  token?: string;
  /** Give up the handshake after this many milliseconds. */
  handshakeTimeoutMs: number;
  /** Engine options (role is always 'client', the WebSocket side that dials). */
  session?: Omit<SessionOptions, 'role' | 'transport'>;
  /**
   * Streams the gateway opens (the agent's), with the gate for the backend reads bridged to them
   * (server/read-gate.ts). Takes the place of `session.onStream`.
   */
  onStream?(stream: Stream, route: string, readGate: ReadGate): void;
}

export interface Dialed {
  readonly ws: WebSocket;
  readonly session: Session;
  /** The URL dialed (no credential in it). */
  readonly url: string;
  /** Settles when the WebSocket has closed, with its close code and reason (1006 when it was lost). */
  readonly closed: Promise<{ code: number; reason: string }>;
}

/** The endpoint URL for a gateway base URL, e.g. `wss://gw.example.com/base` + `/mux`. Throws a SockgateError. */
export function endpointUrl(gateway: string, path: string, query: Record<string, string> = {}): string {
  let u: URL;
  try {
    u = new URL(gateway);
  } catch {
    throw new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', `gateway ${JSON.stringify(gateway)}: expected ws://HOST:PORT or wss://HOST:PORT`);
  }
  if (u.protocol === 'http:') u.protocol = 'ws:';
  else if (u.protocol === 'https:') u.protocol = 'wss:';
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', `gateway ${JSON.stringify(gateway)}: expected ws://HOST:PORT or wss://HOST:PORT`);
  }
  if (u.username || u.password) throw new SockgateError('SOCKGATE_ERR_CONFIG_INVALID', 'gateway: put the token in --token, not in the URL');
  u.pathname = `${u.pathname.replace(/\/+$/, '')}${path}`;
  u.hash = '';
  for (const [name, value] of Object.entries(query)) u.searchParams.set(name, value);
  return u.href;
}

/** Open a session to a gateway endpoint. Rejects with a DialError (SOCKGATE_ERR_SDK_HANDSHAKE, or the refusal's code). */
export function dial(opts: DialOptions): Promise<Dialed> {
  let url: string;
  try {
    url = endpointUrl(opts.gateway, opts.path, opts.query);
  } catch (err) {
    return Promise.reject(err);
  }
  const ws = new WebSocket(url, [SUBPROTOCOL], {
    maxPayload: MAX_FRAME_BYTES,
    perMessageDeflate: false,
    handshakeTimeout: opts.handshakeTimeoutMs,
    ...(opts.token !== undefined && { headers: { authorization: `Bearer ${opts.token}` } }),
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => {
    ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString() }));
  });
  /**
   * The TCP (or TLS) socket under the WebSocket: the transport writes a turn's frames in one write, and DATA
   * frames straight to it, masked as they are copied (no permessage-deflate is offered above).
   */
  let socket: Socket | undefined;
  ws.once('upgrade', (res: IncomingMessage) => (socket = res.socket));
  return new Promise<Dialed>((resolve, reject) => {
    let settled = false;
    const fail = (err: DialError): void => {
      if (settled) return;
      settled = true;
      reject(err);
      ws.terminate();
    };
    ws.on('error', (err: Error) => {
      // After the open, errors end in 'close', which the session sees.
      fail(handshakeError(`${redactedUrl(url)}: ${errnoText(err)}`, undefined, err));
    });
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      readRefusal(res).then((body) => fail(refusalError(res.statusCode ?? 0, body)));
    });
    ws.once('open', () => {
      if (ws.protocol !== SUBPROTOCOL) {
        fail(handshakeError(`${redactedUrl(url)}: the server selected subprotocol ${JSON.stringify(ws.protocol)}, not ${SUBPROTOCOL}`));
        return;
      }
      settled = true;
      const maxBuffered = opts.session?.maxTransportBufferedBytes ?? DEFAULT_MAX_TRANSPORT_BUFFERED_BYTES;
      const transport = new WsTransport(ws, maxBuffered, undefined, socket, true);
      const onStream = opts.onStream;
      const session = new Session({
        ...opts.session,
        ...(onStream && { onStream: (stream: Stream, route: string) => onStream(stream, route, transport.readGate) }),
        role: 'client',
        transport,
        maxTransportBufferedBytes: maxBuffered,
      });
      // With the socket, bind() reads it through a frame reader: DATA payloads to the engine as views of the
      // socket's reads, not joined by ws first (client/frame-reader.ts; no extension is offered above).
      transport.bind(session);
      resolve({ ws, session, url: redactedUrl(url), closed });
    });
  });
}

/** True for a refusal a retry cannot fix: the request or the credential is wrong (400, 401, 403, 404). */
export function isPermanentRefusal(err: unknown): boolean {
  const status = (err as DialError | undefined)?.status;
  return status === 400 || status === 401 || status === 403 || status === 404;
}

function handshakeError(detail: string, status?: number, cause?: unknown): DialError {
  return Object.assign(new SockgateError('SOCKGATE_ERR_SDK_HANDSHAKE', detail, cause === undefined ? undefined : { cause }), status === undefined ? {} : { status });
}

/** The gateway's `{ code, message }` as a SockgateError of that code, with the status; else SDK_HANDSHAKE. */
function refusalError(status: number, body: string): DialError {
  try {
    const parsed = JSON.parse(body) as { code?: unknown; message?: unknown };
    if (isErrorCode(parsed.code)) {
      const err = new SockgateError(parsed.code, `HTTP ${status}${typeof parsed.message === 'string' ? `: ${parsed.message}` : ''}`);
      return Object.assign(err, { status });
    }
  } catch {
    // Not ours (a proxy's page): the status says what there is to say.
  }
  return handshakeError(`HTTP ${status}`, status);
}

function readRefusal(res: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const done = (): void => {
      res.destroy();
      resolve(Buffer.concat(chunks).toString('utf8'));
    };
    res.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      bytes += chunk.length;
      if (bytes >= MAX_REFUSAL_BODY_BYTES) done();
    });
    res.on('end', done);
    res.on('error', done);
  });
}

function errnoText(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code && !err.message.startsWith(code) ? `${code}: ${err.message}` : err.message;
}

/** The URL without any access_token (tools send the token in a header, but a user may have put one in the URL). */
function redactedUrl(url: string): string {
  const u = new URL(url);
  if (u.searchParams.has('access_token')) u.searchParams.set('access_token', '[REDACTED]');
  return u.href;
}
