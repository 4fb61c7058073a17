/**
 * sockgate/client for Node: the universal SDK with the `ws` package as the default WebSocket class (also where the
 * runtime has a global one, Node 22 and later), and toDuplex() for code that wants a Node stream.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { nextTick } from 'node:process';
import { setImmediate } from 'node:timers';
import { Duplex, type DuplexOptions } from 'node:stream';
import type { ReadableStream as NodeReadableStream, WritableStream as NodeWritableStream } from 'node:stream/web';
import WebSocket from 'ws';
import { MAX_FRAME_BYTES } from '../shared/constants.js';
import { TurnCork } from '../shared/turn-cork.js';
import { readFramesBeside, type FrameSink } from './frame-reader.js';
import { writeMaskedDataBeside, writeMaskedMessageBeside } from './masked-frames.js';
import type { ReconnectOptions, ReconnectingSession, SocketLike } from './reconnect.js';
import { openSession as openUniversal, type OpenSessionOptions, type SockgateSession } from './session.js';
import type { SockgateSocket } from './socket.js';

export * from './index.js';

/**
 * ws for the SDK in Node (exported for tests only):
 * - a message size limit: a message over MAX_FRAME_BYTES is refused from its header, before it is buffered, and
 *   the session closes with 1009 (PROTOCOL 1.4). Browsers offer no such limit.
 * - corkTurn() (client/transport.ts): the frames of one turn go to the kernel in one write. Each write to a
 *   loopback or LAN socket runs the network stack and wakes the reader; a stream that sends 64 KiB at a time
 *   paid that per frame (docs/BENCHMARKS.md: mux echo 525 against 492 MB/s, upload 1,008 against 833).
 * - sendData() (client/transport.ts): DATA frames masked in the pass that copies their payload, one copy where
 *   ws.send() makes two (client/masked-frames.ts); sendSmall(): control frames framed and masked in one write.
 * - takeFrames() (client/transport.ts): the socket read by a FrameReader, DATA payloads handed on as views of
 *   the socket's reads, where ws joins each message into a buffer of its own first (client/frame-reader.ts).
 * @internal
 */
export class NodeWebSocket extends WebSocket {
  /** The TCP (or TLS) socket under the WebSocket, from the handshake's response. */
  private socket: Socket | undefined;
  private turns: TurnCork | undefined;

  private frameSink: FrameSink | undefined;

  constructor(url: string, protocols?: string | string[]) {
    // No permessage-deflate: sockgate carries bytes as they are, and sendData() needs ws to write synchronously.
    super(url, protocols, { maxPayload: MAX_FRAME_BYTES, perMessageDeflate: false });
    this.once('upgrade', (res: IncomingMessage) => {
      this.socket = res.socket;
      this.turns = new TurnCork(res.socket, nextTick, setImmediate);
    });
    // Before any listener of the SDK's: ws has just attached its reading to the socket, and read nothing yet.
    this.once('open', () => this.readFrames());
  }

  takeFrames(sink: FrameSink): void {
    this.frameSink = sink;
  }

  /** The socket read through a FrameReader in front of ws (client/frame-reader.ts), when no extension was negotiated. */
  private readFrames(): void {
    if (this.socket && this.frameSink && this.extensions === '') readFramesBeside(this.socket, this.frameSink, MAX_FRAME_BYTES);
  }

  corkTurn(deferrable = false): void {
    this.turns?.cork(deferrable);
  }

  /**
   * Send a DATA frame straight to the socket, masked as it is copied (client/masked-frames.ts); `done` runs once
   * it was written. False when this cannot (not open, or an extension was negotiated): use send() then.
   */
  sendData(streamId: number, payload: Uint8Array, done: () => void): boolean {
    return this.socket !== undefined && writeMaskedDataBeside(this, this.socket, streamId, payload, done);
  }

  /**
   * Send a small binary message (a control frame) straight to the socket, framed and masked in one write
   * (client/masked-frames.ts); `done` runs once it was written. False when this cannot: use send() then.
   */
  sendSmall(message: Uint8Array, done: () => void): boolean {
    return this.socket !== undefined && writeMaskedMessageBeside(this, this.socket, message, done);
  }
}

/**
 * As the universal openSession, with NodeWebSocket (`ws`) as the default WebSocket class even where the runtime
 * has a global one (Node 22 and later): only it refuses an oversized message from its header, before buffering it
 * (PROTOCOL 1.4), reports when each send reached the kernel (recycled frames, no polling for drain), and batches
 * and frames as above. Pass `WebSocket: globalThis.WebSocket` for the global one.
 */
export function openSession(url: string | URL, options: OpenSessionOptions & { reconnect: true | ReconnectOptions }): Promise<ReconnectingSession>;
export function openSession(url: string | URL, options?: OpenSessionOptions): Promise<SockgateSession>;
export function openSession(url: string | URL, options: OpenSessionOptions = {}): Promise<SockgateSession | ReconnectingSession> {
  return openUniversal(url, { ...options, WebSocket: options.WebSocket ?? NodeWebSocket });
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
