/**
 * sockgate/client for Node: the universal SDK with the `ws` package as the default WebSocket class when the
 * runtime has no global one (Node 20), and toDuplex() for code that wants a Node stream.
 */
import { Duplex, type DuplexOptions } from 'node:stream';
import type { ReadableStream as NodeReadableStream, WritableStream as NodeWritableStream } from 'node:stream/web';
import WebSocket from 'ws';
import { MAX_FRAME_BYTES } from '../shared/constants.js';
import type { ReconnectOptions, ReconnectingSession, SocketLike } from './reconnect.js';
import { openSession as openUniversal, type OpenSessionOptions, type SockgateSession } from './session.js';
import type { SockgateSocket } from './socket.js';
import type { WebSocketConstructor } from './transport.js';

export * from './index.js';

/**
 * ws with a message size limit: a message over MAX_FRAME_BYTES is refused from its header, before it is
 * buffered, and the session closes with 1009 (PROTOCOL 1.4). Browsers offer no such limit.
 */
class LimitedWebSocket extends WebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols, { maxPayload: MAX_FRAME_BYTES });
  }
}

/** As the universal openSession, with `ws` as the default WebSocket class when there is no global one. */
export function openSession(url: string | URL, options: OpenSessionOptions & { reconnect: true | ReconnectOptions }): Promise<ReconnectingSession>;
export function openSession(url: string | URL, options?: OpenSessionOptions): Promise<SockgateSession>;
export function openSession(url: string | URL, options: OpenSessionOptions = {}): Promise<SockgateSession | ReconnectingSession> {
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  return openUniversal(url, { ...options, WebSocket: options.WebSocket ?? global ?? LimitedWebSocket });
}

/**
 * A Node Duplex over a socket (Duplex.fromWeb): `end()` half-closes, 'end' is the backend's EOF, and errors
 * keep their sockgate `code`. Duplex.fromWeb defaults to allowHalfOpen: false (the Duplex ends its writable
 * side once the readable ends, like net.Socket); pass { allowHalfOpen: true } to keep writing after EOF.
 */
export function toDuplex(socket: SockgateSocket | SocketLike, options?: Pick<DuplexOptions, 'allowHalfOpen' | 'decodeStrings' | 'encoding' | 'highWaterMark' | 'objectMode' | 'signal'>): Duplex {
  // The DOM and node:stream/web typings of the same global classes differ only in BYOB details.
  const pair = { readable: socket.readable as unknown as NodeReadableStream, writable: socket.writable as unknown as NodeWritableStream };
  return Duplex.fromWeb(pair, options);
}
