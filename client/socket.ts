/**
 * One stream of a session as a socket shaped like WICG Direct Sockets' TCPSocket and Cloudflare's connect():
 * Web Streams of bytes, `opened`, `closed`, `close()`. The adapter keeps the engine's contract (shared/session.ts):
 * credit goes back only for bytes the application has read, and a write resolves only once the engine took it.
 */
import { SockgateError } from '../shared/errors.js';
import { JoinedQueue } from '../shared/joined-queue.js';
import type { Stream } from '../shared/session.js';

/** What `opened` resolves to. The gateway tells us nothing more in protocol v1 (no addresses). */
export interface SocketOpenInfo {
  /** Bytes from the backend; ends on the backend's EOF. */
  readonly readable: ReadableStream<Uint8Array>;
  /** Bytes to the backend; `close()` half-closes (the backend sees EOF). */
  readonly writable: WritableStream<Uint8Array>;
  /** The route this socket reaches. */
  readonly route: string;
}

/** @internal What a socket needs from its session. */
export interface SocketHost {
  /** The engine may hold DATA for the transport now: make sure someone watches for drain. */
  poke(): void;
  /** The socket's stream has closed. */
  release(socket: SockgateSocket): void;
}

type ReadState = 'open' | 'done';

export class SockgateSocket {
  /** The route this socket reaches. */
  readonly route: string;
  /**
   * Bytes from the backend, available at once (like Cloudflare's socket.readable); `opened` gives the same
   * stream. A chunk counts as read, and its credit goes back to the gateway, when a read() takes it.
   */
  readonly readable: ReadableStream<Uint8Array>;
  /**
   * Bytes to the backend, available at once: writes before the gateway accepted the stream go out within the
   * initial window (PROTOCOL 4.2). A write resolves once the session has sent it; close() half-closes.
   */
  readonly writable: WritableStream<Uint8Array>;
  /** Resolves when the gateway has connected the backend; rejects with a SockgateError (branch on err.code). */
  readonly opened: Promise<SocketOpenInfo>;
  /**
   * Settles when the socket is finished: resolves when both directions ended cleanly and everything received
   * was read (or dropped by cancel/close), or after our own reset(); rejects with the error that ended it.
   */
  readonly closed: Promise<void>;

  private readonly stream: Stream | undefined;
  private readonly host: SocketHost | undefined;
  /** Received bytes no read() has taken yet; joined, so tiny frames do not each cost a queue entry. */
  private readonly queue = new JoinedQueue();
  private readController!: ReadableStreamDefaultController<Uint8Array>;
  private writeController!: WritableStreamDefaultController;
  private readState: ReadState = 'open';
  /** A read() is waiting for a chunk. */
  private wantRead = false;
  /** Received bytes are dropped (credit returned) because the application closed without reading. */
  private discarding = false;
  private writesEnded = false;
  private drainWaiter: { resolve: () => void; reject: (err: unknown) => void } | undefined;
  private inflight: Promise<void> | undefined;
  /** The stream ended by our own reset (cancel, abort, reset()). */
  private localAbort = false;
  private streamClosed = false;
  private failure: SockgateError | undefined;
  private isOpened = false;
  private resolveOpened!: (info: SocketOpenInfo) => void;
  private rejectOpened!: (err: unknown) => void;
  private resolveClosed!: () => void;
  private rejectClosed!: (err: unknown) => void;
  private closedSettled = false;

  /** @internal Sessions create sockets: use session.connect(route). */
  constructor(route: string, stream: Stream | SockgateError, host?: SocketHost) {
    this.route = route;
    this.host = host;
    this.opened = new Promise<SocketOpenInfo>((resolve, reject) => {
      this.resolveOpened = resolve;
      this.rejectOpened = reject;
    });
    this.closed = new Promise<void>((resolve, reject) => {
      this.resolveClosed = resolve;
      this.rejectClosed = reject;
    });
    // Nobody has to await these: a failure also errors the streams, so never report them as unhandled.
    this.opened.catch(() => {});
    this.closed.catch(() => {});

    this.readable = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.readController = controller;
        },
        pull: () => this.pull(),
        cancel: () => this.cancelReadable(),
      },
      // Nothing is queued ahead of the reader: pull() runs only while a read() waits, so unread bytes stay in
      // our queue (bounded by the receive window) and hold back their credit.
      { highWaterMark: 0 },
    );
    this.writable = new WritableStream<Uint8Array>({
      start: (controller) => {
        this.writeController = controller;
      },
      write: (chunk) => this.write(chunk),
      close: () => this.endWrites(),
      abort: () => this.abort('writable aborted'),
    });

    if (stream instanceof SockgateError) {
      this.stream = undefined;
      this.handleClose(stream);
      return;
    }
    this.stream = stream;
    stream.onOpen = () => {
      this.isOpened = true;
      this.resolveOpened({ readable: this.readable, writable: this.writable, route: this.route });
    };
    // Browsers and ws give each message a fresh ArrayBuffer, and the Node SDK's frame reader views of socket reads
    // that Node never reuses (client/frame-reader.ts): the engine's view is ours to keep, no copy.
    stream.onData = (chunk) => this.receive(chunk);
    stream.onEnd = () => this.maybeEndReadable();
    stream.onDrain = () => {
      const waiter = this.drainWaiter;
      this.drainWaiter = undefined;
      waiter?.resolve();
    };
    stream.onClose = (err) => this.handleClose(err);
  }

  /** Bytes written but not yet handed to the WebSocket (waiting for credit or for the transport). */
  get bufferedAmount(): number {
    return this.stream?.bufferedAmount ?? 0;
  }

  /**
   * Close gracefully, TCP style: if the readable is not locked, bytes still arriving are dropped (their credit
   * returned, so the backend is never blocked on us); everything written so far is sent, then our side
   * half-closes (FIN); resolves as `closed` does, once the backend has closed its side too. With a writer still
   * holding the writable, the stream ends after the write in progress and later writes reject
   * (SOCKGATE_ERR_STREAM_STATE): close or release your writer first. For an immediate end use reset().
   */
  async close(): Promise<void> {
    // Drop input first: a peer that cannot send to us may stop reading what we still have to write.
    if (!this.readable.locked) {
      this.discarding = true;
      await this.readable.cancel().catch(() => {});
    }
    if (this.stream && !this.stream.isClosed) {
      if (!this.writable.locked) {
        // Flushes writes queued in the WritableStream first; fails harmlessly if it is already closed or errored.
        await this.writable.close().catch(() => {});
      } else {
        await this.inflight?.catch(() => {});
        try {
          this.endWrites();
        } catch {
          // The stream failed meanwhile: `closed` reports it.
        }
      }
    }
    return this.closed;
  }

  /**
   * Abort both directions now (RESET with SOCKGATE_ERR_STREAM_CANCELLED): data not yet delivered either way is
   * dropped; readable and writable error; `closed` resolves.
   */
  reset(reason = 'reset by the application'): void {
    this.abort(reason);
  }

  // ---- readable ----------------------------------------------------------------------------------------------

  private receive(chunk: Uint8Array): void {
    if (this.readState !== 'open') {
      // Nobody will read it: hand the credit straight back so the peer can finish.
      this.stream?.consume(chunk.length);
      return;
    }
    // A read() waiting on an empty queue takes the chunk as it is (no copy into the queue's blocks).
    if (this.wantRead && this.queue.bytes === 0) this.hand(chunk);
    else this.queue.push(chunk);
  }

  private pull(): void {
    const chunk = this.queue.shift();
    if (chunk) this.hand(chunk);
    else this.wantRead = true;
  }

  /** Give the waiting read() a chunk, and its credit back to the peer. */
  private hand(chunk: Uint8Array): void {
    this.wantRead = false;
    this.readController.enqueue(chunk);
    this.stream?.consume(chunk.length);
    this.maybeEndReadable();
  }

  private maybeEndReadable(): void {
    if (this.readState !== 'open' || this.queue.bytes > 0 || !this.stream?.remoteEnded) return;
    this.readState = 'done';
    this.readController.close();
    this.maybeResolveClosed();
  }

  private cancelReadable(): void {
    const dropped = this.queue.bytes;
    this.readState = 'done';
    this.queue.clear();
    const stream = this.stream;
    if (this.discarding || !stream || stream.isClosed || stream.remoteEnded) {
      // The peer has finished sending, or close() asked to drop the rest: no need to stop the peer.
      stream?.consume(dropped);
      this.maybeResolveClosed();
      return;
    }
    this.abort('readable cancelled');
  }

  // ---- writable ----------------------------------------------------------------------------------------------

  private write(chunk: unknown): Promise<void> | undefined {
    const bytes = toBytes(chunk);
    const stream = this.stream;
    if (!stream || stream.isClosed) throw stream?.error ?? this.failure ?? new SockgateError('SOCKGATE_ERR_STREAM_CLOSED');
    if (this.writesEnded) throw new SockgateError('SOCKGATE_ERR_STREAM_STATE', 'write after close()');
    if (bytes.length === 0) return undefined;
    const accepted = stream.write(bytes);
    this.host?.poke();
    if (accepted) return undefined;
    if (stream.isClosed) throw stream.error ?? new SockgateError('SOCKGATE_ERR_STREAM_CLOSED');
    const drained = new Promise<void>((resolve, reject) => {
      this.drainWaiter = { resolve, reject };
    });
    this.inflight = drained;
    return drained.finally(() => {
      if (this.inflight === drained) this.inflight = undefined;
    });
  }

  private endWrites(): void {
    const stream = this.stream;
    if (!stream || stream.isClosed) {
      const err = stream?.error ?? this.failure;
      if (err && !this.localAbort) throw err;
      return;
    }
    this.writesEnded = true;
    stream.end();
    this.host?.poke();
  }

  // ---- ending ------------------------------------------------------------------------------------------------

  private abort(detail: string): void {
    const stream = this.stream;
    if (!stream || stream.isClosed) return;
    this.localAbort = true;
    stream.reset(new SockgateError('SOCKGATE_ERR_STREAM_CANCELLED', detail));
  }

  /** The engine closed the stream (or it never opened): err is undefined for a clean close. */
  private handleClose(err: SockgateError | undefined): void {
    this.streamClosed = true;
    this.host?.release(this);
    if (err) {
      if (!this.localAbort) this.failure = err;
      if (!this.isOpened) this.rejectOpened(err);
      // RESET drops undelivered data in both directions (PROTOCOL 4.4).
      this.queue.clear();
      if (this.readState === 'open') {
        this.readState = 'done';
        this.readController.error(err);
      }
      this.writeController.error(err);
      const waiter = this.drainWaiter;
      this.drainWaiter = undefined;
      waiter?.reject(err);
    }
    if (this.failure) {
      if (!this.closedSettled) {
        this.closedSettled = true;
        this.rejectClosed(this.failure);
      }
      return;
    }
    this.maybeResolveClosed();
  }

  private maybeResolveClosed(): void {
    if (this.closedSettled || !this.streamClosed || this.failure || this.readState === 'open') return;
    this.closedSettled = true;
    this.resolveClosed();
  }
}

/** Web Streams carry any chunk; we take bytes: Uint8Array (Buffer too), any other view, or an ArrayBuffer. */
function toBytes(chunk: unknown): Uint8Array {
  if (chunk instanceof Uint8Array) return chunk;
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk);
  throw new TypeError('sockgate sockets carry bytes: write a Uint8Array');
}
