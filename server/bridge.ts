/**
 * The one bridge between an engine Stream and a Node Duplex (a backend net.Socket, a local socket, or another
 * stream as a StreamSocket), used by the gateway's mux mode, the reverse-tunnel agent and the forwarder:
 *
 * - stream -> socket: a chunk is reported consumed (its credit returned, PROTOCOL 5.2) only when socket.write()
 *   accepted it without backpressure, else on the socket's 'drain';
 * - socket -> stream: when stream.write() returns false the socket is paused until the stream's onDrain; with a
 *   read gate (server/read-gate.ts) and two or more sockets of the session in bulk transfers, such a socket then
 *   waits for the gate to give it room, and is also paused after a read that went out whole while the transport
 *   has no room for another or other sockets wait;
 * - FIN maps to socket.end(), the socket's EOF to FIN (half-close both ways, PROTOCOL 4.3);
 * - every failure ends the other side with a code: a SockgateError keeps its own, a socket error maps from its
 *   errno (server/backend.ts).
 *
 * A stream the peer opened (origin 'remote') is accepted once `connect()` resolves and refused with its error
 * otherwise; a stream we opened (origin 'local', e.g. the forwarder's) can carry data before the peer accepts it,
 * within the initial window (PROTOCOL 4.2), and an OPEN_FAIL simply closes it.
 */
import type { OnReadOpts } from 'node:net';
import type { Duplex } from 'node:stream';
import { SockgateError } from '../shared/errors.js';
import { JoinedQueue } from '../shared/joined-queue.js';
import type { Stream } from '../shared/session.js';
import { backendError } from './backend.js';
import { SMALL_READ_BYTES, giveReadBuffer, lendRead, releaseRead, sharedReadBuffer, takeReadBuffer } from './read-buffer.js';
import type { ReadGate } from './read-gate.js';

/** The log methods the bridge uses: pino's (Fastify's logger), or any object with the same calls. */
export interface BridgeLogger {
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface BridgeOptions {
  /**
   * Connect the other side. Rejects with a SockgateError (its code goes to the peer); anything else is a bug.
   * A net.Socket should be created with `onread` (reads into a shared buffer, written to the stream as borrowed
   * bytes: no allocation per read); a Duplex that ignores it emits 'data' as usual.
   */
  connect(onread: OnReadOpts): Promise<Duplex>;
  log: BridgeLogger;
  /** Fields that name the stream in log lines (route, stream id). */
  fields?: Record<string, unknown>;
  /** Stream bytes moved either way (an idle timer's touch). */
  onActivity?(): void;
  /** The other side is connected (and a stream the peer opened was accepted). */
  onOpen?(socket: Duplex): void;
  /**
   * connect() failed while the stream still waited for it: it is refused (OPEN_FAIL) or reset with `err` next. Not
   * called when the peer reset the stream, or the session ended, meanwhile: nothing was refused then.
   */
  onRefused?(err: SockgateError): void;
  /** The stream closed; err is undefined for a clean close. Called once. */
  onClose?(err: SockgateError | undefined): void;
  /** The connected socket closed (after the stream, when it still flushed the last bytes). */
  onSocketClose?(): void;
  /** Holds each connected socket until it closes, so an owner (the session) can destroy what outlives it. */
  sockets?: Set<Duplex>;
  /**
   * The session transport's gate (WsTransport.readGate): a socket in a bulk transfer reads only when the transport
   * has room for what it reads, so that its bytes wait in the kernel rather than in the engine (server/read-gate.ts).
   * Without it a socket reads whenever its stream has sent what it had.
   */
  readGate?: ReadGate;
}

/** Bridge `stream` to the Duplex `opts.connect()` gives. Never throws; every failure ends the stream with a code. */
export function bridgeStream(stream: Stream, opts: BridgeOptions): void {
  const { log } = opts;
  const fields = opts.fields ?? { stream: stream.id };
  let socket: Duplex | undefined;
  /**
   * Peer data waiting for the socket: before it connected (the initial window bounds it, PROTOCOL 4.2) or while
   * its buffer is full (the window bounds it). Joined into blocks, so a peer's tiny frames cannot each become a
   * buffered write: ~200 bytes of bookkeeping per 1-byte frame would multiply the window many times over.
   */
  const waiting = new JoinedQueue();
  /** The peer's FIN, to pass on as end() once `waiting` is empty. */
  let endWhenFlushed = false;
  /** Bytes written to the socket while its buffer was full: their credit goes back on 'drain'. */
  let owed = 0;
  /** The socket sent EOF / the peer sent FIN (and we called end()). */
  let socketEnded = false;
  let peerEnded = false;

  /** Write what waits while the socket takes it (credit back for what it took at once); end() once all is out. */
  const flush = (s: Duplex): void => {
    for (let block = waiting.shift(); block; block = waiting.shift()) {
      if (!s.write(block)) {
        owed += block.length;
        break;
      }
      stream.consume(block.length);
    }
    if (endWhenFlushed && waiting.bytes === 0) {
      endWhenFlushed = false;
      s.end();
    }
  };
  stream.onData = (chunk) => {
    opts.onActivity?.();
    if (!socket || owed > 0 || waiting.bytes > 0) waiting.push(chunk);
    else if (socket.write(chunk)) stream.consume(chunk.length);
    else owed += chunk.length;
  };
  stream.onEnd = () => {
    peerEnded = true;
    endWhenFlushed = true;
    if (socket) flush(socket);
  };
  const gate = opts.readGate;
  /** The socket's last read was SMALL_READ_BYTES or more: in a bulk transfer, which the gate counts. */
  let bulk = false;
  /** Tell the gate when the socket starts or stops a bulk transfer: it holds reads back only while two compete. */
  const setBulk = (now: boolean): void => {
    if (now === bulk) return;
    bulk = now;
    if (now) gate?.bulkStarted();
    else gate?.bulkEnded();
  };
  /** The gate's turn for this socket: false when there is nothing left to resume. */
  const resume = (): boolean => {
    if (!socket || stream.isClosed) return false;
    socket.resume();
    return true;
  };
  stream.onDrain = () => {
    letGo();
    if (gate && bulk && gate.contended) gate.wait(resume);
    else socket?.resume();
  };

  const onSocketData = (chunk: Buffer): void => {
    opts.onActivity?.();
    if (!stream.write(chunk)) socket!.pause();
  };
  const shared = sharedReadBuffer();
  /** The buffer the socket reads into next (Node asks after every read). */
  let next: Uint8Array = shared;
  /** A lent read the stream still refers to (its write returned false): let go on onDrain, or when it closes. */
  let held: Uint8Array | undefined;
  function letGo(): void {
    if (held) releaseRead(held);
    held = undefined;
  }
  /**
   * Reads go into the shared buffer, of which the engine copies what it keeps, until one fills it (a bulk
   * transfer: more is waiting). From then on each read goes into a pooled buffer lent to the engine whole, whose
   * DATA frames the transport writes as views of it (server/read-buffer.ts lendRead); a read that does not fill
   * its buffer, or after which the socket pauses, puts the socket back on the shared one, so that neither an idle
   * socket nor a paused one pins a buffer (at 100 streams the gate pauses each socket after every read, and 100
   * pinned buffers cost the gateway more CPU than the copies they save: docs/BENCHMARKS.md).
   *
   * False pauses the socket: until onDrain when the stream pushed back, else until the gate's turn (a bulk read
   * that went out whole, but other bulk sockets compete and the transport has no room for another read, or others
   * wait for it).
   */
  const onread: OnReadOpts = {
    buffer: () => next,
    callback: (n, buf) => {
      opts.onActivity?.();
      setBulk(n >= SMALL_READ_BYTES);
      let flowing: boolean;
      if (buf === shared || n < SMALL_READ_BYTES) {
        flowing = stream.write(buf.subarray(0, n), true);
        if (buf !== shared) giveReadBuffer(buf);
      } else {
        lendRead(buf);
        flowing = stream.write(buf.subarray(0, n));
        // Written out whole, or dropped (the stream closed): the frames hold what they carry.
        if (flowing || stream.isClosed) releaseRead(buf);
        else held = buf;
      }
      if (flowing && gate && bulk && gate.contended && !gate.mayReadOn()) {
        gate.wait(resume);
        flowing = false;
      }
      next = flowing && n === buf.length ? takeReadBuffer() : shared;
      return flowing;
    },
  };
  const onSocketEnd = (): void => {
    socketEnded = true;
    setBulk(false);
    stream.end();
  };
  const onSocketDrain = (): void => {
    const n = owed;
    owed = 0;
    stream.consume(n);
    flush(socket!);
  };
  const onSocketError = (err: Error): void => {
    if (stream.isClosed) log.debug({ err, ...fields }, 'socket error after the stream closed');
    else stream.reset(err instanceof SockgateError ? err : backendError(err, 'open'));
  };
  const onSocketClose = (): void => {
    opts.sockets?.delete(socket!);
    opts.onSocketClose?.();
    // A clean close after both EOFs leaves the stream to flush what it still holds for the peer.
    if (!stream.isClosed && !(socketEnded && peerEnded)) {
      stream.reset(new SockgateError('SOCKGATE_ERR_BACKEND_RESET', 'the backend closed the connection'));
    }
  };

  stream.onClose = (err) => {
    letGo();
    setBulk(false);
    gate?.forget(resume);
    if (socket) {
      socket.off('data', onSocketData);
      socket.off('end', onSocketEnd);
      // Clean: both sides sent EOF, but the peer's last bytes may still wait for the socket (its buffer was full
      // when the FINs crossed): 'drain' keeps writing them (onSocketDrain), then end() (endWhenFlushed), and the
      // socket closes itself once it took them. 'error' and 'close' stay attached until then; the owner destroys
      // it if it ends first.
      if (err) {
        waiting.clear();
        socket.off('drain', onSocketDrain);
        socket.destroy();
      }
    } else waiting.clear();
    opts.onClose?.(err);
  };

  const connected = (s: Duplex): void => {
    if (stream.isClosed) {
      s.destroy(); // reset by the peer, or the session ended, while we were connecting
      return;
    }
    socket = s;
    opts.sockets?.add(s);
    s.on('data', onSocketData);
    s.on('end', onSocketEnd);
    s.on('drain', onSocketDrain);
    s.on('error', onSocketError);
    s.on('close', onSocketClose);
    stream.accept();
    if (stream.isClosed) return;
    opts.onOpen?.(s);
    flush(s);
  };
  const failed = (err: unknown): void => {
    if (!(err instanceof SockgateError)) log.error({ err, ...fields }, 'connect failed unexpectedly');
    const refusal = err instanceof SockgateError ? err : new SockgateError('SOCKGATE_ERR_STREAM_INTERNAL', undefined, { cause: err });
    if (stream.isClosed) return;
    opts.onRefused?.(refusal);
    abortStream(stream, refusal);
  };
  let connecting: Promise<Duplex>;
  try {
    connecting = opts.connect(onread);
  } catch (err) {
    connecting = Promise.reject(err);
  }
  connecting.then(
    (s) => guarded(() => connected(s)),
    (err: unknown) => guarded(() => failed(err)),
  );

  function guarded(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      log.error({ err, ...fields }, 'stream bridge internal error');
      abortStream(stream, new SockgateError('SOCKGATE_ERR_STREAM_INTERNAL'));
    }
  }
}

/** End a stream with an error whatever its state: OPEN_FAIL before it was accepted, RESET after. */
export function abortStream(stream: Stream, err: SockgateError): void {
  if (stream.state === 'accepting') stream.reject(err);
  else stream.reset(err);
}
