/**
 * The session engine (PROTOCOL 4 to 6): frames in, frames out, streams with credit and half-close. The gateway,
 * the SDK and the agent all run this one engine; only stream-id parity differs. It uses no Node-only API:
 * adapters connect a Stream to a net.Socket (gateway) or to Web Streams (SDK).
 *
 * Adapter contract, as for Node streams: when `stream.write()` returns false, stop writing until
 * `onDrain`; report bytes handed out through `onData` with `stream.consume(n)` once they were written onward
 * without backpressure. That is what keeps every queue bounded by one window.
 */
import {
  CRITICAL_OPTION_BIT,
  FrameType,
  HEADER_BYTES,
  INITIAL_WINDOW,
  MAX_DATA_PAYLOAD,
  MAX_STREAM_ID,
  PING_PAYLOAD_BYTES,
  ROUTE_NAME_PATTERN,
} from './constants.js';
import { decodeFrame } from './decode.js';
import {
  encodeData,
  encodeFin,
  encodeGoAway,
  encodeOpen,
  encodeOpenFail,
  encodeOpenOk,
  encodePing,
  encodePong,
  encodeReset,
  encodeWindow,
} from './encode.js';
import { ERRORS, SockgateError, closeCodeOf, codeFromClose, codeFromWire, wireCodeOf } from './errors.js';
import type { Frame, FrameOption } from './frame.js';
import { ReceiveWindow, SendCredit } from './flow.js';
import { fitCloseReason } from './utf8.js';

/** What a session needs from its WebSocket. */
export interface Transport {
  /**
   * Send one binary message. `deferrable` (a WINDOW): the transport may hold it a little, to the end of the event
   * loop's pending I/O, to send it together with others (shared/turn-cork.ts); ignoring it is always correct.
   */
  send(message: Uint8Array, deferrable?: boolean): void;
  /**
   * Optional: memory for the next DATA frame of `bytes` bytes, which send() receives back and may recycle once
   * the frame left (server/mux.ts pools them). Undefined: the engine allocates the frame.
   */
  frameBuffer?(bytes: number): Uint8Array | undefined;
  /**
   * Optional: send one DATA frame of `data` (1 to MAX_DATA_PAYLOAD bytes) for the stream, framed by the transport
   * itself (the Node SDK masks the payload straight into its WebSocket frame: one copy instead of two). `data` may
   * be reused once this returns, unless its writer lent it to the transport (the gateway writes pieces of a
   * lent backend read as they are, holding the read until the socket wrote them: server/read-buffer.ts). Without
   * it the engine encodes the frame and calls send().
   */
  sendData?(streamId: number, data: Uint8Array): void;
  /** Bytes handed to send() but not yet written to the network (WebSocket.bufferedAmount). */
  readonly bufferedAmount: number;
  /** Close the WebSocket with a close code and a short reason. */
  close(code: number, reason: string): void;
}

export interface SessionOptions {
  role: 'client' | 'server';
  transport: Transport;
  /** Largest receive window per stream, in bytes (auto-tuning grows toward it). Default 4 MiB. */
  maxWindowBytes?: number;
  /**
   * The receive windows of the streams receiving data, together, in bytes (PROTOCOL 5.7): a stream's window grows
   * only up to its share, this over the streams that received DATA in the last second, and never below
   * INITIAL_WINDOW. It keeps a session's busy streams even: a stream that grew first cannot keep more than its
   * share of the link. Default 4 x maxWindowBytes (16 MiB).
   */
  maxSessionWindowBytes?: number;
  /** Stop sending DATA while the transport holds more than this, in bytes. Default 1 MiB. */
  maxTransportBufferedBytes?: number;
  /**
   * Close the session (1008) when the transport holds more than this, in bytes: only control frames are sent
   * past maxTransportBufferedBytes, so this only trips on a peer that sends but never reads. Default 16 MiB.
   */
  maxTransportBacklogBytes?: number;
  /** Streams the peer may have open at once; more are refused with SOCKGATE_ERR_STREAM_TOO_MANY. Default 1024. */
  maxIncomingStreams?: number;
  /** PINGs awaiting a PONG at once. Default 8. */
  maxPendingPings?: number;
  /**
   * While stream data arrives, refresh the round-trip time with a PING at most once per this many milliseconds,
   * so that window auto-tuning (PROTOCOL 5.5) sees the RTT under load rather than one taken on an idle link. Off
   * (undefined) by default: window growth then relies on pings the application sends.
   */
  rttProbeIntervalMs?: number;
  /** A new stream opened by the peer. Call accept() or reject() on it (now or later). */
  onStream?: (stream: Stream, route: string, options: readonly FrameOption[]) => void;
  onGoAway?: (err: SockgateError) => void;
  /** The session ended; err is undefined for a normal close. Called once. */
  onClose?: (err: SockgateError | undefined) => void;
  /**
   * Asked before an incoming OPEN is processed further; return an error to refuse it with OPEN_FAIL
   * (used for rate limits). Optional.
   */
  admitOpen?: () => SockgateError | undefined;
  /**
   * An incoming OPEN was refused by the engine itself, before onStream (GOAWAY sent, admitOpen, too many
   * streams, a bad route name or option). `route` is the peer's text, unchecked. For metrics; optional.
   */
  onOpenRefused?: (route: string, err: SockgateError) => void;
  /** Called for every RESET the peer sends, before its stream is looked up: a rate limit may charge it. */
  onPeerReset?: () => void;
  /** Clock in milliseconds; performance.now by default. */
  now?: () => number;
}

type StreamState = 'opening' | 'accepting' | 'open' | 'closed';

/** A stream shares the window budget while DATA reached it within this long, in milliseconds (PROTOCOL 5.7). */
const ACTIVE_STREAM_MS = 1000;
/** How often, at most, the streams sharing the budget are counted again, in milliseconds. */
const RECOUNT_MS = 100;

export class Stream {
  readonly id: number;
  readonly route: string;
  /** Where this stream was opened: by us ('local') or by the peer ('remote'). */
  readonly origin: 'local' | 'remote';
  state: StreamState;
  /** Bytes sent and received as DATA, for logs and metrics. */
  bytesOut = 0;
  bytesIn = 0;
  /** The error the stream closed with, if any. */
  error: SockgateError | undefined;

  /**
   * Bytes from the peer. The view is only valid until the callback returns unless the transport gives fresh
   * buffers (ws and browsers do, and so does the Node SDK's frame reader: views of socket reads Node never reuses).
   */
  onData: (chunk: Uint8Array) => void = () => {};
  /** The peer sent FIN: no more onData. */
  onEnd: () => void = () => {};
  /** write() returned false earlier, and now everything pending has been sent. */
  onDrain: () => void = () => {};
  /** OPEN_OK arrived (streams we opened). */
  onOpen: () => void = () => {};
  /** The stream is closed (both FINs, RESET, OPEN_FAIL or session end). err is undefined for a clean close. */
  onClose: (err: SockgateError | undefined) => void = () => {};

  /** @internal */ readonly credit = new SendCredit();
  /** @internal */ readonly window: ReceiveWindow;
  /** @internal */ pending: Uint8Array[] = [];
  /** @internal */ pendingBytes = 0;
  /** @internal */ needDrain = false;
  /** @internal */ endRequested = false;
  /** We sent FIN. */
  localEnded = false;
  /** The peer sent FIN. */
  remoteEnded = false;
  /** @internal */ queued = false;
  /**
   * @internal For the window budget (Session.windowShare): bytes received at the last count, and the count at
   * which they were last seen to grow. Kept at the counts, so that DATA frames pay no clock read.
   */
  countedReceived = 0;
  lastDataAt = -Infinity;

  constructor(
    private readonly session: Session,
    id: number,
    route: string,
    origin: 'local' | 'remote',
    maxWindow: number,
  ) {
    this.id = id;
    this.route = route;
    this.origin = origin;
    this.state = origin === 'local' ? 'opening' : 'accepting';
    this.window = new ReceiveWindow(maxWindow);
  }

  /** A method, not a narrowed field read: callbacks can close the stream under us. */
  get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Bytes written but not yet sent (waiting for credit or transport). */
  get bufferedAmount(): number {
    return this.pendingBytes;
  }

  /**
   * Queue bytes to send. Returns false when the caller should stop until onDrain (like Writable.write).
   * Writes after end() or close are dropped and return false.
   *
   * `borrowed`: the caller reuses the chunk's memory as soon as write() returns (a shared read buffer). What
   * went out at once was copied into DATA frames already; only the part that must wait for credit or for the
   * transport is copied, so a flowing stream makes no copy beyond the frame's own. Not borrowed: the engine refers
   * to the chunk until it has been sent (write() returned true, or onDrain), or the stream closed; the transport
   * may hold on to it longer only if it was lent (Transport.sendData).
   */
  write(chunk: Uint8Array, borrowed = false): boolean {
    if (this.state === 'closed' || this.endRequested) return false;
    if (chunk.length === 0) return this.pendingBytes === 0;
    for (let at = 0; at < chunk.length; at += MAX_DATA_PAYLOAD) {
      this.pending.push(chunk.length <= MAX_DATA_PAYLOAD ? chunk : chunk.subarray(at, at + MAX_DATA_PAYLOAD));
    }
    this.pendingBytes += chunk.length;
    this.session.flush(this);
    if (this.pendingBytes > 0) {
      // Only this chunk's pieces can share its memory (earlier borrowed ones were copied when written), and they
      // are the last ones pending: copy those, from the end.
      for (let i = this.pending.length - 1; borrowed && i >= 0 && this.pending[i]!.buffer === chunk.buffer; i--) {
        this.pending[i] = new Uint8Array(this.pending[i]!);
      }
      this.needDrain = true;
      return false;
    }
    return true;
  }

  /** Half-close our direction: FIN goes out after everything written so far. */
  end(): void {
    if (this.state === 'closed' || this.endRequested) return;
    this.endRequested = true;
    this.session.flush(this);
  }

  /** Report n bytes from onData as consumed; sends WINDOW when due (PROTOCOL 5.5). */
  consume(n: number): void {
    if (this.state === 'closed' || n <= 0) return;
    const update = this.window.consume(n, this.session.now(), this.session.rtt, this.session.windowShare);
    // After the peer's FIN no more DATA comes, so credit would be wasted bytes on the wire.
    if (update && !this.remoteEnded) {
      // Credit may wait until the loop's pending I/O has run (Transport.send): it is returned once half a window
      // was consumed (PROTOCOL 5.5), so the other half covers the wait.
      this.session.sendControl(encodeWindow(this.id, update.consumed, update.window), true);
      this.session.probeRtt();
    }
  }

  /** Abort both directions with a code (PROTOCOL 4.4). Pending data is dropped. */
  reset(err: SockgateError = new SockgateError('SOCKGATE_ERR_STREAM_CANCELLED')): void {
    if (this.state === 'closed') return;
    this.session.sendControl(encodeReset(this.id, wireCodeOf(err), wireReason(err)));
    this.session.closeStream(this, err);
  }

  /** Accept a stream the peer opened: sends OPEN_OK. */
  accept(): void {
    if (this.state !== 'accepting') return;
    this.state = 'open';
    this.session.sendControl(encodeOpenOk(this.id));
    this.session.flush(this);
  }

  /** Refuse a stream the peer opened: sends OPEN_FAIL and closes it. */
  reject(err: SockgateError): void {
    if (this.state !== 'accepting') return;
    this.session.sendControl(encodeOpenFail(this.id, wireCodeOf(err), wireReason(err)));
    this.session.closeStream(this, err);
  }

  /** @internal */
  get canSend(): boolean {
    // The opener may send within the initial window before OPEN_OK (PROTOCOL 4.2); the acceptor only after accept().
    return this.state === 'open' || this.state === 'opening';
  }
}

export class Session {
  readonly role: 'client' | 'server';
  /** Latest PING round-trip time in milliseconds, once measured. */
  rtt: number | undefined;
  /** True once either side sent GOAWAY: no new streams. */
  goingAway = false;
  /** We sent GOAWAY (receiving the peer's must not stop us from sending ours). */
  private sentGoAway = false;
  closed = false;
  readonly now: () => number;

  private readonly transport: Transport;
  private readonly streams = new Map<number, Stream>();
  /** The stream the DATA payload pieces now arriving go to (receiveDataHead); undefined drops them. */
  private dataTarget: Stream | undefined;
  private readonly maxWindow: number;
  private readonly sessionWindow: number;
  /** windowShare's count of streams receiving data, and when it was taken. */
  private activeStreams = 0;
  private activeCountedAt = -Infinity;
  private readonly maxBuffered: number;
  private readonly maxBacklog: number;
  private readonly maxIncoming: number;
  private readonly maxPendingPings: number;
  private readonly opts: SessionOptions;
  private nextLocalId: number;
  /** Greatest id each side has opened (PROTOCOL 4.5). */
  private lastLocalId = 0;
  private lastRemoteId = 0;
  private incoming = 0;
  /** Streams with pending data waiting for the transport, in round-robin order. */
  private readonly sendQueue: Stream[] = [];
  private readonly pings = new Map<string, { sentAt: number; resolve: (rtt: number) => void; reject: (e: unknown) => void }>();
  private pingCounter = 0;
  /** rttProbeIntervalMs: a probe PING is in flight; when the last one was sent. */
  private probing = false;
  private lastProbeAt = -Infinity;

  constructor(opts: SessionOptions) {
    this.opts = opts;
    this.role = opts.role;
    this.transport = opts.transport;
    this.maxWindow = opts.maxWindowBytes ?? 4 * 1024 * 1024;
    this.sessionWindow = opts.maxSessionWindowBytes ?? 4 * this.maxWindow;
    if (!(this.sessionWindow >= INITIAL_WINDOW)) throw new RangeError(`maxSessionWindowBytes ${this.sessionWindow} below ${INITIAL_WINDOW}`);
    this.maxBuffered = opts.maxTransportBufferedBytes ?? 1024 * 1024;
    this.maxBacklog = opts.maxTransportBacklogBytes ?? 16 * 1024 * 1024;
    this.maxIncoming = opts.maxIncomingStreams ?? 1024;
    this.maxPendingPings = opts.maxPendingPings ?? 8;
    this.nextLocalId = opts.role === 'client' ? 1 : 2;
    this.now = opts.now ?? (() => performance.now());
    // Fail fast on a bad window rather than on the first stream.
    new ReceiveWindow(this.maxWindow);
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** The streams not yet closed, in the order they were opened. */
  openStreams(): IterableIterator<Stream> {
    return this.streams.values();
  }

  /**
   * @internal The most one stream's receive window may grow to now (PROTOCOL 5.7): the budget over the streams
   * that received DATA in the last ACTIVE_STREAM_MS, as seen at counts taken at most every RECOUNT_MS. Idle
   * streams (a quiet terminal) take no share, so one busy stream among many open ones still reaches
   * maxWindowBytes.
   */
  get windowShare(): number {
    const now = this.now();
    if (!(now - this.activeCountedAt < RECOUNT_MS)) {
      let active = 0;
      for (const stream of this.streams.values()) {
        if (stream.window.received !== stream.countedReceived) {
          stream.countedReceived = stream.window.received;
          stream.lastDataAt = now;
        }
        if (now - stream.lastDataAt < ACTIVE_STREAM_MS) active++;
      }
      this.activeStreams = active;
      this.activeCountedAt = now;
    }
    return this.sessionWindow / Math.max(1, this.activeStreams);
  }

  /** Open a stream to a route (PROTOCOL 4.2). Throws SockgateError when the session cannot open one. */
  open(route: string, options: readonly FrameOption[] = []): Stream {
    if (this.closed) throw new SockgateError('SOCKGATE_ERR_SDK_NOT_CONNECTED');
    if (this.goingAway) throw new SockgateError('SOCKGATE_ERR_STREAM_SHUTTING_DOWN');
    if (!ROUTE_NAME_PATTERN.test(route)) throw new SockgateError('SOCKGATE_ERR_STREAM_BAD_OPEN', `route name ${JSON.stringify(route)}`);
    if (this.nextLocalId > MAX_STREAM_ID) throw new SockgateError('SOCKGATE_ERR_SESSION_IDS_EXHAUSTED');
    const id = this.nextLocalId;
    this.nextLocalId += 2;
    this.lastLocalId = id;
    const stream = new Stream(this, id, route, 'local', this.maxWindow);
    this.streams.set(id, stream);
    this.sendControl(encodeOpen(id, route, options));
    return stream;
  }

  /** Measure the round-trip time with an app-level PING (PROTOCOL 6.1). */
  ping(): Promise<number> {
    if (this.closed) return Promise.reject(new SockgateError('SOCKGATE_ERR_SDK_NOT_CONNECTED'));
    if (this.pings.size >= this.maxPendingPings) return Promise.reject(new SockgateError('SOCKGATE_ERR_SESSION_POLICY', 'too many pings pending'));
    const opaque = new Uint8Array(PING_PAYLOAD_BYTES);
    new DataView(opaque.buffer).setFloat64(0, ++this.pingCounter);
    const key = keyOf(opaque);
    return new Promise<number>((resolve, reject) => {
      this.pings.set(key, { sentAt: this.now(), resolve, reject });
      this.sendControl(encodePing(opaque));
    });
  }

  /** @internal A WINDOW just went out: data is flowing in, so refresh the RTT if rttProbeIntervalMs says so. */
  probeRtt(): void {
    const every = this.opts.rttProbeIntervalMs;
    if (every === undefined || this.probing || this.closed || this.pings.size >= this.maxPendingPings) return;
    const now = this.now();
    if (now - this.lastProbeAt < every) return;
    this.lastProbeAt = now;
    this.probing = true;
    const done = (): void => {
      this.probing = false;
    };
    this.ping().then(done, done);
  }

  /** PINGs sent and not yet answered. */
  get pendingPings(): number {
    return this.pings.size;
  }

  /** Announce that we accept no new streams (PROTOCOL 6.2). */
  goAway(err: SockgateError = new SockgateError('SOCKGATE_ERR_STREAM_SHUTTING_DOWN')): void {
    if (this.closed || this.sentGoAway) return;
    this.sentGoAway = true;
    this.goingAway = true;
    this.sendControl(encodeGoAway(wireCodeOf(err), wireReason(err)));
  }

  /** Close the session: every stream ends with err (or a clean close), and the WebSocket is closed. */
  close(err?: SockgateError): void {
    if (this.closed) return;
    const code = err ? closeCodeOf(err) : 1000;
    const reason = err ? fitCloseReason(err.message) : '';
    try {
      this.teardown(err ?? new SockgateError('SOCKGATE_ERR_SESSION_CLOSED'), err);
    } finally {
      // Even when an adapter callback threw during teardown: a closed session must not leave its WebSocket open.
      this.transport.close(code, reason);
    }
  }

  /** The WebSocket closed under us (adapter calls this from its close event). Never throws. */
  transportClosed(code: number, reason: string): void {
    if (this.closed) return;
    const err = code === 1000 || code === 1001 ? undefined : sessionErrorForClose(code, reason);
    try {
      this.teardown(err ?? new SockgateError(code === 1001 ? 'SOCKGATE_ERR_SESSION_GOING_AWAY' : 'SOCKGATE_ERR_SESSION_CLOSED'), err);
    } catch {
      // An adapter callback threw during teardown; every stream was closed all the same (see closeFromTransport).
    }
  }

  /** A text message arrived: PROTOCOL 1.3. Never throws. */
  receiveText(): void {
    this.closeFromTransport(new SockgateError('SOCKGATE_ERR_PROTOCOL_TEXT_FRAME'));
  }

  /** One binary WebSocket message arrived. Never throws: bad input closes what it must. */
  receive(message: Uint8Array): void {
    if (this.closed) return;
    let frame: Frame;
    try {
      frame = decodeFrame(message);
    } catch (err) {
      this.closeFromTransport(err instanceof SockgateError ? err : new SockgateError('SOCKGATE_ERR_INTERNAL', String(err), { cause: err }));
      return;
    }
    this.dataTarget = undefined;
    try {
      this.handle(frame);
    } catch (err) {
      this.handlingFailed(err);
    }
  }

  /**
   * One DATA frame's header, from a transport that takes DATA frames apart (client/frame-reader.ts): `length`
   * payload bytes for `streamId` follow in pieces, through receiveDataPiece(). The frame is checked from its header
   * as receive() checks a whole one (PROTOCOL 2.3, 3, 4.3, 5.4). Never throws.
   */
  receiveDataHead(streamId: number, length: number): void {
    this.dataTarget = undefined;
    if (this.closed) return;
    try {
      if (streamId === 0) throw new SockgateError('SOCKGATE_ERR_PROTOCOL_BAD_STREAM_ID', `stream id 0 for type 0x${FrameType.DATA.toString(16)}`);
      if (!(length >= 1 && length <= MAX_DATA_PAYLOAD)) throw new SockgateError('SOCKGATE_ERR_PROTOCOL_BAD_LENGTH', `DATA of ${length} bytes`);
      this.dataTarget = this.acceptData(streamId, length);
    } catch (err) {
      this.handlingFailed(err);
    }
  }

  /** The next piece of the payload announced by receiveDataHead(), in order. Never throws. */
  receiveDataPiece(piece: Uint8Array): void {
    const stream = this.dataTarget;
    // Dropped with their stream: a RESET (ours or the application's, even from within onData) drops undelivered data.
    if (this.closed || !stream || stream.isClosed) return;
    try {
      stream.bytesIn += piece.length;
      stream.onData(piece);
    } catch (err) {
      this.handlingFailed(err);
    }
  }

  /** A throw while handling a frame is a bug in us or in an adapter callback, never the peer's fault: internal. */
  private handlingFailed(err: unknown): void {
    const e = err instanceof SockgateError && err.closeCode !== undefined ? err : new SockgateError('SOCKGATE_ERR_INTERNAL', String(err), { cause: err });
    this.closeFromTransport(e);
  }

  /** Close on behalf of a transport event (message, text, drain), which must never throw back into the transport. */
  private closeFromTransport(err: SockgateError): void {
    try {
      this.close(err);
    } catch {
      // An adapter callback threw while the session closed. The session and its transport are closed all the
      // same (teardown goes on past a throw), and a transport's event loop is no place to report it.
    }
  }

  /** The transport has room again (adapter calls this when bufferedAmount falls). */
  transportDrained(): void {
    if (this.closed) return;
    try {
      // Round-robin, one frame per stream per turn, so a busy stream cannot starve its neighbours.
      while (this.sendQueue.length > 0 && this.transport.bufferedAmount < this.maxBuffered) {
        const stream = this.sendQueue.shift()!;
        stream.queued = false;
        this.sendOne(stream);
        if (stream.state !== 'closed' && stream.pendingBytes > 0 && stream.credit.available > 0) this.enqueue(stream);
        else this.afterSend(stream);
      }
    } catch (err) {
      // An onDrain callback threw: as in receive(), an adapter bug closes the session as internal (1011).
      this.closeFromTransport(new SockgateError('SOCKGATE_ERR_INTERNAL', String(err), { cause: err }));
    }
  }

  /** True while DATA waits for the transport to drain; adapters use it to know when to watch bufferedAmount. */
  get wantsDrain(): boolean {
    return this.sendQueue.length > 0;
  }

  // ---- internals shared with Stream -------------------------------------------------------------------------

  /** @internal Send what a stream may send now; queue it for the transport otherwise. */
  flush(stream: Stream): void {
    if (this.closed || !stream.canSend) return;
    // Streams already waiting for the transport go first: one whose data arrives just after a drain must not jump
    // the round-robin queue (with many busy streams that starved the queued ones). The queue is only ever non-empty
    // while the transport holds bytes, so a drain is due.
    if (this.sendQueue.length > 0 && stream.pendingBytes > 0 && stream.credit.available > 0) {
      this.enqueue(stream);
      return;
    }
    while (stream.pendingBytes > 0 && stream.credit.available > 0) {
      if (this.transport.bufferedAmount >= this.maxBuffered) {
        this.enqueue(stream);
        return;
      }
      this.sendOne(stream);
    }
    this.afterSend(stream);
  }

  /** @internal `deferrable`: see Transport.send. */
  sendControl(message: Uint8Array, deferrable = false): void {
    if (this.closed) return;
    if (this.transport.bufferedAmount > this.maxBacklog) {
      this.close(new SockgateError('SOCKGATE_ERR_SESSION_POLICY', 'peer does not read'));
      return;
    }
    this.transport.send(message, deferrable);
  }

  /** @internal */
  closeStream(stream: Stream, err: SockgateError | undefined): void {
    if (stream.state === 'closed') return;
    stream.state = 'closed';
    stream.error = err;
    stream.pending = [];
    stream.pendingBytes = 0;
    this.streams.delete(stream.id);
    if (stream.origin === 'remote') this.incoming--;
    if (stream.queued) {
      const i = this.sendQueue.indexOf(stream);
      if (i >= 0) this.sendQueue.splice(i, 1);
      stream.queued = false;
    }
    stream.onClose(err);
  }

  private enqueue(stream: Stream): void {
    if (stream.queued) return;
    stream.queued = true;
    this.sendQueue.push(stream);
  }

  /** Send one DATA frame from the stream's pending queue, within credit. */
  private sendOne(stream: Stream): void {
    const head = stream.pending[0];
    if (!head) return;
    const n = Math.min(head.length, stream.credit.available);
    if (n <= 0) return;
    const chunk = n === head.length ? head : head.subarray(0, n);
    if (n === head.length) stream.pending.shift();
    else stream.pending[0] = head.subarray(n);
    stream.pendingBytes -= n;
    stream.credit.take(n);
    stream.bytesOut += n;
    if (this.transport.sendData) this.transport.sendData(stream.id, chunk);
    else this.transport.send(encodeData(stream.id, chunk, this.transport.frameBuffer?.(HEADER_BYTES + n)));
  }

  /** After sending: FIN once everything is out, and drain notification. */
  private afterSend(stream: Stream): void {
    if (stream.state === 'closed' || stream.pendingBytes > 0) return;
    if (stream.endRequested && !stream.localEnded) {
      stream.localEnded = true;
      this.sendControl(encodeFin(stream.id));
      this.maybeFinished(stream);
      if (stream.isClosed) return;
    }
    if (stream.needDrain) {
      stream.needDrain = false;
      stream.onDrain();
    }
  }

  private maybeFinished(stream: Stream): void {
    if (stream.localEnded && stream.remoteEnded && stream.state !== 'opening' && stream.state !== 'accepting') {
      this.closeStream(stream, undefined);
    }
  }

  private teardown(streamErr: SockgateError, sessionErr: SockgateError | undefined): void {
    this.closed = true;
    // Every stream and the session hear of the close even if an adapter callback throws; the first throw is
    // rethrown once they all have.
    let thrown: { err: unknown } | undefined;
    for (const stream of [...this.streams.values()]) {
      try {
        this.closeStream(stream, streamErr);
      } catch (err) {
        thrown ??= { err };
      }
    }
    for (const p of this.pings.values()) p.reject(streamErr);
    this.pings.clear();
    this.sendQueue.length = 0;
    try {
      this.opts.onClose?.(sessionErr);
    } catch (err) {
      thrown ??= { err };
    }
    if (thrown) throw thrown.err;
  }

  private isLocalId(id: number): boolean {
    return (id % 2 === 1) === (this.role === 'client');
  }

  /** Find the stream for a frame, or decide it is stale (undefined) or a protocol error (throws). PROTOCOL 4.5. */
  private lookup(id: number): Stream | undefined {
    const stream = this.streams.get(id);
    if (stream) return stream;
    const last = this.isLocalId(id) ? this.lastLocalId : this.lastRemoteId;
    if (id > last) throw new SockgateError('SOCKGATE_ERR_PROTOCOL_BAD_STREAM_ID', `stream ${id} was never opened`);
    return undefined;
  }

  /**
   * The stream a DATA frame of `length` payload bytes goes to, its window charged; undefined when it goes nowhere:
   * the stream is gone, or the frame broke its rules and the stream was reset (PROTOCOL 4.3, 5.4).
   */
  private acceptData(streamId: number, length: number): Stream | undefined {
    const stream = this.lookup(streamId);
    if (!stream) return undefined;
    if (stream.remoteEnded) {
      stream.reset(new SockgateError('SOCKGATE_ERR_STREAM_STATE', 'DATA after FIN'));
      return undefined;
    }
    if (!stream.window.receive(length)) {
      stream.reset(new SockgateError('SOCKGATE_ERR_STREAM_FLOW_CONTROL', `DATA past the limit ${stream.window.limit}`));
      return undefined;
    }
    return stream;
  }

  private handle(frame: Frame): void {
    switch (frame.type) {
      case FrameType.OPEN:
        return this.handleOpen(frame.streamId, frame.route, frame.options);
      case FrameType.OPEN_OK: {
        if (!this.isLocalId(frame.streamId)) throw new SockgateError('SOCKGATE_ERR_PROTOCOL_BAD_STREAM_ID', 'OPEN_OK for a stream we did not open');
        const stream = this.lookup(frame.streamId);
        if (!stream) return;
        if (stream.state !== 'opening') throw new SockgateError('SOCKGATE_ERR_PROTOCOL', `OPEN_OK for stream ${stream.id} in state ${stream.state}`);
        // PROTOCOL 3.1: an unknown critical option refuses the stream; past OPEN_OK that is a RESET.
        const critical = frame.options.find((o) => (o.tag & CRITICAL_OPTION_BIT) !== 0);
        if (critical) {
          stream.reset(new SockgateError('SOCKGATE_ERR_STREAM_BAD_OPEN', `unknown critical option 0x${critical.tag.toString(16)} in OPEN_OK`));
          return;
        }
        stream.state = 'open';
        stream.onOpen();
        this.maybeFinished(stream);
        if (!stream.isClosed) this.flush(stream);
        return;
      }
      case FrameType.OPEN_FAIL: {
        if (!this.isLocalId(frame.streamId)) throw new SockgateError('SOCKGATE_ERR_PROTOCOL_BAD_STREAM_ID', 'OPEN_FAIL for a stream we did not open');
        const stream = this.lookup(frame.streamId);
        if (!stream) return;
        if (stream.state !== 'opening') throw new SockgateError('SOCKGATE_ERR_PROTOCOL', `OPEN_FAIL for stream ${stream.id} in state ${stream.state}`);
        this.closeStream(stream, new SockgateError(codeFromWire(frame.code), frame.reason));
        return;
      }
      case FrameType.DATA: {
        const stream = this.acceptData(frame.streamId, frame.data.length);
        if (!stream) return;
        stream.bytesIn += frame.data.length;
        stream.onData(frame.data);
        return;
      }
      case FrameType.WINDOW: {
        const stream = this.lookup(frame.streamId);
        if (!stream) return;
        const broken = stream.credit.update(frame.consumed, frame.window);
        if (broken) {
          stream.reset(new SockgateError('SOCKGATE_ERR_STREAM_FLOW_CONTROL', broken));
          return;
        }
        this.flush(stream);
        return;
      }
      case FrameType.FIN: {
        const stream = this.lookup(frame.streamId);
        if (!stream) return;
        if (stream.remoteEnded) {
          stream.reset(new SockgateError('SOCKGATE_ERR_STREAM_STATE', 'second FIN'));
          return;
        }
        stream.remoteEnded = true;
        stream.onEnd();
        this.maybeFinished(stream);
        return;
      }
      case FrameType.RESET: {
        this.opts.onPeerReset?.();
        const stream = this.lookup(frame.streamId);
        if (!stream) return;
        this.closeStream(stream, new SockgateError(codeFromWire(frame.code), frame.reason));
        return;
      }
      case FrameType.PING:
        this.sendControl(encodePong(frame.opaque));
        return;
      case FrameType.PONG: {
        const key = keyOf(frame.opaque);
        const p = this.pings.get(key);
        if (!p) return; // unsolicited or late PONGs are harmless
        this.pings.delete(key);
        this.rtt = this.now() - p.sentAt;
        p.resolve(this.rtt);
        return;
      }
      case FrameType.GOAWAY: {
        this.goingAway = true;
        this.opts.onGoAway?.(new SockgateError(codeFromWire(frame.code), frame.reason));
        return;
      }
    }
  }

  private handleOpen(id: number, route: string, options: readonly FrameOption[]): void {
    if (this.isLocalId(id) || id <= this.lastRemoteId) {
      throw new SockgateError('SOCKGATE_ERR_PROTOCOL_BAD_STREAM_ID', `OPEN with stream id ${id}`);
    }
    this.lastRemoteId = id;
    const refuse = (err: SockgateError): void => {
      this.sendControl(encodeOpenFail(id, wireCodeOf(err), wireReason(err)));
      this.opts.onOpenRefused?.(route, err);
    };
    if (this.goingAway) return refuse(new SockgateError('SOCKGATE_ERR_STREAM_SHUTTING_DOWN'));
    const admitted = this.opts.admitOpen?.();
    if (admitted) return refuse(admitted);
    if (this.incoming >= this.maxIncoming) return refuse(new SockgateError('SOCKGATE_ERR_STREAM_TOO_MANY', `limit ${this.maxIncoming}`));
    if (!ROUTE_NAME_PATTERN.test(route)) return refuse(new SockgateError('SOCKGATE_ERR_STREAM_BAD_OPEN', 'bad route name'));
    const critical = options.find((o) => (o.tag & CRITICAL_OPTION_BIT) !== 0);
    if (critical) return refuse(new SockgateError('SOCKGATE_ERR_STREAM_BAD_OPEN', `unknown critical option 0x${critical.tag.toString(16)}`));
    if (!this.opts.onStream) return refuse(new SockgateError('SOCKGATE_ERR_ROUTE_UNKNOWN', 'this side accepts no streams'));
    const stream = new Stream(this, id, route, 'remote', this.maxWindow);
    this.streams.set(id, stream);
    this.incoming++;
    this.opts.onStream(stream, route, options);
  }
}

function keyOf(opaque: Uint8Array): string {
  let s = '';
  for (const b of opaque) s += b.toString(16).padStart(2, '0');
  return s;
}

/**
 * The reason to send with a code: the error's detail without the code's own message, which the receiver adds
 * back (PROTOCOL 7: a backend reason starts with its errno, e.g. `ECONNREFUSED: connect ...`).
 */
function wireReason(err: SockgateError): string {
  const spec = (ERRORS as Record<string, { message: string } | undefined>)[err.code];
  if (!spec) return err.message;
  if (err.message === spec.message) return '';
  return err.message.startsWith(`${spec.message}: `) ? err.message.slice(spec.message.length + 2) : err.message;
}

function sessionErrorForClose(code: number, reason: string): SockgateError {
  return new SockgateError(codeFromClose(code), reason || `WebSocket closed with ${code}`);
}
