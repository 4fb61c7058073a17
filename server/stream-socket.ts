/**
 * An engine Stream as a Node Duplex with net.Socket's stream contract, so that whatever bridges a backend socket
 * (the mux bridge, raw mode) can bridge a stream on another session too: the gateway hands a client this for a
 * route to a reverse-tunnel agent (PROTOCOL 11.5).
 *
 * Credit stays end to end. A chunk from the stream is reported consumed only once the Duplex's reader took it:
 * emitted to a 'data' listener that did not pause during the emit, or read out of the buffer (then `_read` asks for
 * more and the held credit goes back). A chunk written to the Duplex completes (and the writer's buffer shrinks)
 * only once the engine accepted it without backpressure, else at the stream's onDrain. So a slow reader on either
 * side withholds the other stream's credit, and memory stays bounded by the windows plus the Duplex buffers.
 */
import { Duplex } from 'node:stream';
import { MAX_DATA_PAYLOAD } from '../shared/constants.js';
import { SockgateError } from '../shared/errors.js';
import type { Stream } from '../shared/session.js';

/**
 * The Duplex's writable buffer, in bytes: write() returns false once this much is waiting for the engine. One
 * frame's payload, so a writer holds at most a frame more than the stream's own pending data.
 */
const WRITABLE_HIGH_WATER_BYTES = MAX_DATA_PAYLOAD;

export class StreamSocket extends Duplex {
  /**
   * Resolves when the peer accepted the stream (OPEN_OK; at once for a stream the peer opened); rejects with the
   * error when it closes first (OPEN_FAIL, RESET, session end).
   */
  readonly opened: Promise<void>;
  readonly stream: Stream;
  /** Bytes handed to the reader side but not yet reported consumed. */
  #held = 0;
  /** The write in progress, waiting for the stream's onDrain. */
  #writeDone: ((err?: Error | null) => void) | undefined;

  constructor(stream: Stream) {
    super({
      allowHalfOpen: true,
      // Nothing is read ahead: a chunk waits in the buffer (its credit held) until the reader wants it.
      readableHighWaterMark: 0,
      writableHighWaterMark: WRITABLE_HIGH_WATER_BYTES,
    });
    this.stream = stream;
    let opened!: () => void;
    let failed!: (err: unknown) => void;
    this.opened = new Promise<void>((resolve, reject) => ((opened = resolve), (failed = reject)));
    this.opened.catch(() => {});
    let isOpen = stream.origin === 'remote' || stream.state === 'open';
    if (isOpen) opened();

    stream.onOpen = () => {
      isOpen = true;
      opened();
    };
    stream.onData = (chunk) => {
      const n = chunk.length;
      // The view stays valid: ws hands out a fresh buffer per message (see Stream.onData).
      const taken = this.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      // true: emitted to a flowing reader, or buffered below the mark (never, at mark 0). A reader that paused
      // inside its 'data' handler (its own write returned false) has not accepted more: hold until _read.
      if (taken && this.readableFlowing === true) stream.consume(n);
      else this.#held += n;
    };
    stream.onEnd = () => this.push(null);
    stream.onDrain = () => this.#finishWrite(null);
    stream.onClose = (closeErr) => {
      const err = closeErr && asStreamError(closeErr, isOpen);
      if (!isOpen) failed(err ?? new SockgateError('SOCKGATE_ERR_STREAM_CLOSED', 'closed before it opened'));
      this.#finishWrite(err ?? null);
      // A clean close means both FINs: the readable has ended and the writable finished, so autoDestroy closes us.
      if (err) this.destroy(err);
    };
  }

  override _read(): void {
    const n = this.#held;
    this.#held = 0;
    this.stream.consume(n);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    if (this.stream.isClosed) return done(this.stream.error ?? new SockgateError('SOCKGATE_ERR_STREAM_CLOSED'));
    if (this.stream.write(chunk)) done();
    else if (this.stream.isClosed) done(this.stream.error ?? new SockgateError('SOCKGATE_ERR_STREAM_CLOSED'));
    else this.#writeDone = done;
  }

  override _final(done: (err?: Error | null) => void): void {
    // FIN goes out after everything written so far (Stream.end).
    this.stream.end();
    done();
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    // Our user gave up (destroy() without an error, a failure on its other side): abort the stream both ways.
    if (!this.stream.isClosed) {
      this.stream.reset(err instanceof SockgateError ? err : new SockgateError('SOCKGATE_ERR_STREAM_CANCELLED', err?.message));
    }
    this.#finishWrite(err ?? new SockgateError('SOCKGATE_ERR_STREAM_CANCELLED'));
    done(err);
  }

  #finishWrite(err: Error | null): void {
    const done = this.#writeDone;
    this.#writeDone = undefined;
    done?.(err);
  }
}

/**
 * An error that can travel on as a stream code. A stream ended by its session's end (an agent's connection was
 * lost, replaced, timed out) carries a session code, which no OPEN_FAIL or RESET can: it becomes
 * SOCKGATE_ERR_ROUTE_UNAVAILABLE before the stream opened and SOCKGATE_ERR_BACKEND_RESET after, with the session's
 * code in the reason.
 */
function asStreamError(err: SockgateError, opened: boolean): SockgateError {
  if (err.wireCode !== undefined) return err;
  const code = opened ? 'SOCKGATE_ERR_BACKEND_RESET' : 'SOCKGATE_ERR_ROUTE_UNAVAILABLE';
  return new SockgateError(code, `the session carrying it ended: ${err.code}: ${err.message}`, { cause: err });
}
