/**
 * The engine's Transport over a WebSocket-like object (the browser's WebSocket, ws, or anything shaped like
 * them), and the drain poller that stands in for the 'drain' event WebSockets do not have.
 */
import { BufferPool } from '../shared/buffer-pool.js';
import { HEADER_BYTES, MAX_FRAME_BYTES } from '../shared/constants.js';
import { encodeData } from '../shared/encode.js';
import type { Session, Transport } from '../shared/session.js';
import { fitCloseReason } from '../shared/utf8.js';
import type { FrameSink } from './frame-reader.js';

/** What the SDK uses of a WebSocket: the subset the browser's WebSocket and the `ws` package share. */
export interface WebSocketLike {
  binaryType: string;
  readonly bufferedAmount: number;
  readonly protocol: string;
  readonly readyState: number;
  /**
   * Our messages always own a plain ArrayBuffer (never shared), which is what the DOM's send() asks for. The `ws`
   * package also takes a callback, called once the bytes reached the kernel; browsers ignore it.
   */
  send(data: Uint8Array<ArrayBuffer>, sent?: (err?: Error) => void): void;
  close(code?: number, reason?: string): void;
  /**
   * Optional (the Node SDK's default WebSocket has it): hold back this turn's writes and hand them to the kernel
   * together, in one write, once the turn's promise jobs have run. Called before each send. `deferrable` (a
   * WINDOW): this write alone may wait until the event loop's pending I/O has run (shared/turn-cork.ts).
   */
  corkTurn?(deferrable?: boolean): void;
  /**
   * Optional (the Node SDK's default WebSocket has it): send one DATA frame for `streamId`, framing and masking it
   * in one copy; `done` runs once it reached the kernel. Returns false when it cannot, and then sent nothing.
   */
  sendData?(streamId: number, payload: Uint8Array, done: () => void): boolean;
  /**
   * Optional (the Node SDK's default WebSocket has it): send one small binary message (a control frame), framed
   * and masked in one buffer and one write; `done` runs once it reached the kernel. Returns false when it cannot
   * (too large, not open, an extension), and then sent nothing.
   */
  sendSmall?(message: Uint8Array, done: () => void): boolean;
  /**
   * Optional (the Node SDK's default WebSocket has it): from the open on, hand binary messages to `sink` instead of
   * emitting them as 'message' events, DATA frames taken apart so that their payloads arrive as views of the
   * socket's reads (client/frame-reader.ts). Text messages and closes still come as events.
   */
  takeFrames?(sink: FrameSink): void;
  addEventListener(type: 'open', listener: () => void): void;
  addEventListener(type: 'message', listener: (event: MessageEventLike) => void): void;
  addEventListener(type: 'close', listener: (event: CloseEventLike) => void): void;
  addEventListener(type: 'error', listener: (event: ErrorEventLike) => void): void;
}

/** A WebSocket class: `new WebSocket(url, protocols)`. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The events we read, as both the browser and ws deliver them. */
export interface MessageEventLike {
  readonly data: unknown;
}
export interface CloseEventLike {
  readonly code: number;
  readonly reason: string;
}
/** Browsers give a plain Event; ws gives an ErrorEvent whose message names the cause (e.g. the HTTP status). */
export interface ErrorEventLike {
  readonly message?: string;
  readonly error?: unknown;
}

const OPEN = 1;
/** DATA frames at least this large are built in recycled memory (frameBuffer); smaller ones are allocated. */
const MIN_POOLED_FRAME_BYTES = 16 * 1024;
/** Recycled frames kept per connection (at most 8 x 64 KiB). */
const MAX_FREE_FRAMES = 8;

/** Bytes of a binary message; the text of a text message; undefined for anything else (a Blob). */
export function messageData(data: unknown): Uint8Array | string | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === 'string') return data;
  return undefined;
}

/** Close a WebSocket without throwing, whatever the code and reason. */
export function closeWebSocket(ws: WebSocketLike, code: number, reason: string): void {
  try {
    ws.close(code, fitCloseReason(reason));
    return;
  } catch {
    // Browsers let scripts send only 1000 and 3000-4999; keep the real code in the reason.
  }
  try {
    ws.close(1000, fitCloseReason(`${code} ${reason}`));
  } catch {
    // Already closed, or a WebSocket-like that refuses both: nothing more to do.
  }
}

export class WebSocketTransport implements Transport {
  /**
   * The WebSocket calls send callbacks: the `ws` package does (an EventEmitter, hence `on`), browsers' and undici's
   * WebSocket do not. With callbacks, `onSent` tells the session at once when bytes left, instead of a poll.
   */
  readonly notifiesSent: boolean;
  /** Called after each send's bytes reached the kernel (only when notifiesSent). */
  onSent: () => void = () => {};
  private readonly sent = (): void => this.onSent();
  /** Recycled DATA frames (only with send callbacks). */
  private readonly frames = new BufferPool(MAX_FRAME_BYTES, MAX_FREE_FRAMES, MIN_POOLED_FRAME_BYTES);

  constructor(private readonly ws: WebSocketLike) {
    this.notifiesSent = typeof (ws as { on?: unknown }).on === 'function';
  }

  /**
   * With send callbacks (ws), large DATA frames are built in recycled memory, taken back when ws reports the
   * bytes written: no allocation per frame. Browsers give no such signal, so there the engine allocates.
   */
  frameBuffer(bytes: number): Uint8Array | undefined {
    if (!this.notifiesSent || bytes < MIN_POOLED_FRAME_BYTES || bytes > MAX_FRAME_BYTES) return undefined;
    return this.frames.take();
  }

  send(message: Uint8Array, deferrable = false): void {
    // Only ever called once open; a closing socket drops what it is given, as the engine expects.
    // shared/encode.ts allocates every message with new Uint8Array(n) (or in frameBuffer()'s ArrayBuffer).
    if (this.ws.readyState !== OPEN) return;
    this.ws.corkTurn?.(deferrable);
    if (!this.notifiesSent) return this.ws.send(message as Uint8Array<ArrayBuffer>);
    if (!this.frames.owns(message)) {
      if (this.ws.sendSmall?.(message, this.sent)) return;
      return this.ws.send(message as Uint8Array<ArrayBuffer>, this.sent);
    }
    // Called once, also with an error when the WebSocket closed: ws holds no reference to the bytes after it.
    this.ws.send(message as Uint8Array<ArrayBuffer>, () => {
      this.frames.give(message);
      this.onSent();
    });
  }

  /** DATA through the WebSocket's own framing when it has one (sendData), else encoded here and sent. */
  sendData(streamId: number, data: Uint8Array): void {
    if (this.ws.readyState !== OPEN) return;
    if (this.ws.sendData) {
      this.ws.corkTurn?.();
      if (this.ws.sendData(streamId, data, this.sent)) return;
    }
    this.send(encodeData(streamId, data, this.frameBuffer(HEADER_BYTES + data.length)));
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  close(code: number, reason: string): void {
    closeWebSocket(this.ws, code, reason);
  }
}

/**
 * WebSockets have no 'drain' event, so while the engine holds DATA for the transport (session.wantsDrain) we
 * poll bufferedAmount on a short timer and let the engine send more. The timer runs only while wanted.
 */
export class DrainPoller {
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly session: Session,
    private readonly intervalMs = 5,
  ) {}

  /** Call after anything that may have queued DATA in the engine. Cheap when nothing is queued. */
  check(): void {
    if (this.timer !== undefined || this.session.closed || !this.session.wantsDrain) return;
    this.timer = setTimeout(this.tick, this.intervalMs);
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private readonly tick = (): void => {
    this.timer = undefined;
    this.session.transportDrained();
    this.check();
  };
}
