/**
 * Mux mode (`GET /mux`, PROTOCOL 1 to 6): one WebSocket carries many streams, each bridged to its own backend
 * socket. The protocol lives in the shared session engine; this file is two thin adapters around it:
 * `WsTransport` (engine <-> ws WebSocket) and `bridgeStream` (engine Stream <-> backend socket, through the
 * bridge the agent and the forwarder share: server/bridge.ts). Backpressure is the Node stream contract in both
 * directions: a write that returns false pauses its source until the matching drain.
 */
import { Buffer } from 'node:buffer';
import type { OnReadOpts } from 'node:net';
import { nextTick } from 'node:process';
import { setImmediate } from 'node:timers';
import type { Duplex } from 'node:stream';
import type { FastifyBaseLogger } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import { readFramesBeside, type FrameSink as ReaderSink, type ReadableSocket } from '../client/frame-reader.js';
import {
  maskedDataFrameBytes,
  messageHeadBytes,
  unmaskInPlace,
  writeMaskedDataBeside,
  writeMaskedMessageBeside,
  writeMessageHead,
  type FrameSink,
} from '../client/masked-frames.js';
import { FrameType, HEADER_BYTES, MAX_FRAME_BYTES } from '../shared/constants.js';
import { encodeData } from '../shared/encode.js';
import { BufferPool } from '../shared/buffer-pool.js';
import { SockgateError } from '../shared/errors.js';
import { Session, type Stream, type Transport } from '../shared/session.js';
import { TurnCork, type Corkable } from '../shared/turn-cork.js';
import { abortStream, bridgeStream as bridge } from './bridge.js';
import { IdleTimer, TokenBucket } from './limits.js';
import { READ_BUFFER_BYTES, SMALL_READ_BYTES, holdIfLent, releaseRead } from './read-buffer.js';
import { ReadGate } from './read-gate.js';
import type { StreamMetrics } from './metrics.js';
import { closeReasonBytes, toBuffer } from './ws-util.js';
import type { Route, Target } from './routes.js';

/**
 * The limits mux mode uses, declared structurally so the config's `GatewayConfig['limits']` (server/limits.ts
 * documents each) fits. Optional ones fall back to the engine's defaults or are off when a caller (a bare
 * handler in tests) leaves them out; the gateway always passes them all.
 */
export interface MuxLimits {
  /** Streams a client may have open at once on one session (more are refused with SOCKGATE_ERR_STREAM_TOO_MANY). */
  maxStreamsPerSession: number;
  /** Largest receive window per stream, in bytes (INITIAL_WINDOW..MAX_WINDOW; engine default 4 MiB). */
  maxWindowBytes?: number;
  /** All streams' receive windows together, in bytes (PROTOCOL 5.7; engine default 4 x maxWindowBytes). */
  maxSessionWindowBytes?: number;
  /** Stop sending DATA while the WebSocket holds more than this many bytes not yet sent (engine default 1 MiB). */
  maxTransportBufferedBytes?: number;
  /** Raw mode's message limit; mux sessions use the tighter MAX_FRAME_BYTES instead (PROTOCOL 1.4). */
  maxMessageBytes: number;
  /** Backend connect timeout in milliseconds (applied by `connect`). */
  openTimeoutMs: number;
  /**
   * OPENs and peer RESETs a session may send per second, sustained; OPENs past it are refused with
   * SOCKGATE_ERR_STREAM_RATE_LIMITED, and a session that keeps sending them is closed (1008, see runSession).
   */
  opensPerSecond?: number;
  /** Burst allowance for opensPerSecond, in OPENs. */
  opensBurst?: number;
  /** Close the session (4002) after this many milliseconds without stream bytes either way; 0 or absent: off. */
  idleTimeoutMs?: number;
}

export interface MuxContext {
  resolveRoute(name: string): Route | undefined;
  /**
   * Asked on every OPEN, before the route is looked up: an error (SOCKGATE_ERR_ROUTE_FORBIDDEN) refuses the
   * stream with OPEN_FAIL. Absent: every route is allowed (the bare handler in tests).
   */
  authorize?(route: string): SockgateError | undefined;
  /**
   * connectBackend with the open timeout and builtin resolution; rejects with a SockgateError. A backend socket
   * reads through `onread`; an agent's stream (a Duplex, server/stream-socket.ts) ignores it and emits 'data'.
   */
  connect(target: Target, onread?: OnReadOpts): Promise<Duplex>;
  limits: MuxLimits;
  log: FastifyBaseLogger;
  /** Stream counts, failures, bytes and connect times (server/metrics.ts); absent: not measured. */
  metrics?: StreamMetrics;
}

/** A running mux session, as keepalive and drain see it (server/keepalive.ts, server/drain.ts). */
export interface MuxSessionHandle {
  readonly session: Session;
  /** The session's transport: its onMessage hears every message the peer sends (keepalive). */
  readonly transport: WsTransport;
  /** Streams are open, or backend connections are still flushing after a clean close. */
  readonly busy: boolean;
  /** Called after each stream or backend connection of the session closes (at most a few times per stream). */
  onSettled: (() => void) | undefined;
}

/** The engine's default for maxTransportBufferedBytes (shared/session.ts), needed here for the drain mark. */
const DEFAULT_MAX_TRANSPORT_BUFFERED_BYTES = 1024 * 1024;

/**
 * Recycled memory for DATA frames toward mux peers, process-wide: 64 frames (4 MiB) kept at most. Its frames are
 * at least SMALL_READ_BYTES long (frameBuffer), so control frames are never asked for their buffer.
 */
const framePool = new BufferPool(MAX_FRAME_BYTES, 64, SMALL_READ_BYTES);

/** The callback of a write whose completion the next write's callback reports. */
const noop = (): void => {};

/**
 * The headers of an unmasked (a server's, RFC 6455 5.1), final, binary WebSocket message carrying a DATA frame of
 * `payloadBytes` (1 to MAX_DATA_PAYLOAD) for `streamId`: the WebSocket header (2, 4 or 10 bytes), then ours (6).
 * The payload follows as it is: the same bytes as ws.send(encodeData(streamId, payload)).
 */
export function dataFrameHead(streamId: number, payloadBytes: number): Buffer {
  const m = HEADER_BYTES + payloadBytes;
  const head = Buffer.allocUnsafe(messageHeadBytes(m) + HEADER_BYTES);
  const at = writeMessageHead(head, m, false);
  head[at] = FrameType.DATA;
  head[at + 1] = 0; // flags
  head.writeUInt32BE(streamId, at + 2);
  return head;
}

/**
 * The TCP (or TLS) socket under a WebSocket, as WsTransport uses it: corked per turn, written to for masked DATA,
 * read through a frame reader (client/frame-reader.ts).
 */
export type WsSocket = Corkable & FrameSink & ReadableSocket;

/**
 * The engine's Transport over a `ws` WebSocket, used by the gateway, the agent's dial and the Node test client.
 * `bufferedAmount` counts bytes handed to ws whose send callback has not fired: ws calls it once the bytes left
 * for the kernel, so this is our queue plus ws's, the number the engine throttles DATA on. When it falls below
 * half of `maxBufferedBytes` and the engine has DATA waiting, the engine is told the transport drained.
 */
export class WsTransport implements Transport {
  bufferedAmount = 0;
  private session: Session | undefined;
  private readonly drainBelowBytes: number;
  /**
   * When the backend sockets bridged to this session's streams may read (server/read-gate.ts): pass it to
   * bridgeStream so that bulk reads wait in the kernel, not in the engine, while this transport is full.
   */
  readonly readGate: ReadGate;

  /** One write per turn on the socket under the WebSocket (shared/turn-cork.ts), when the caller gave it. */
  private readonly turns: TurnCork | undefined;
  /** The socket under the WebSocket, when the caller gave it: bind() reads it through a frame reader. */
  private readonly socket: WsSocket | undefined;
  /** `ws` is a client: it reads a gateway's frames (unmasked); else a client's (masked). */
  private readonly isClient: boolean;
  /**
   * Called for each message from the peer (a DATA frame at its header), whether ws or the frame reader read it:
   * ws's 'message' event misses what the reader takes. Keepalive listens here.
   */
  onMessage: (() => void) | undefined;
  /**
   * DATA goes straight to the socket under ws when the caller gave it. A client's WebSocket (the agent's dial)
   * masks it as it is copied (client/masked-frames.ts): one copy of the payload where ws.send() makes two. The
   * gateway's side writes a lent backend read's pieces as they are (sendLent). Undefined without the socket: the
   * engine encodes each frame and calls send().
   */
  readonly sendData: ((streamId: number, data: Uint8Array) => void) | undefined;

  constructor(
    private readonly ws: WebSocket,
    maxBufferedBytes: number,
    /** Called with anything the engine throws from a ws event (a bug: the session is closed 1011). */
    private readonly onInternalError: (err: unknown) => void = () => {},
    /** The TCP (or TLS) socket under `ws` (the upgrade request's, or the handshake response's). */
    socket?: WsSocket,
    /** `ws` is a client (it masks): write DATA to `socket` here, masked as it is copied. */
    maskData = false,
  ) {
    this.drainBelowBytes = maxBufferedBytes / 2;
    this.readGate = new ReadGate(this, () => this.session?.wantsDrain ?? false, maxBufferedBytes, READ_BUFFER_BYTES);
    this.turns = socket && new TurnCork(socket, nextTick, setImmediate);
    this.sendData = !socket
      ? undefined
      : maskData
        ? (streamId, data) => this.sendMasked(socket, streamId, data)
        : (streamId, data) => this.sendLent(socket, streamId, data);
    this.socket = socket;
    this.isClient = maskData;
  }

  private sendMasked(socket: FrameSink, streamId: number, data: Uint8Array): void {
    const n = maskedDataFrameBytes(data.length);
    this.turns?.cork();
    this.bufferedAmount += n;
    if (writeMaskedDataBeside(this.ws, socket, streamId, data, () => this.sent(n))) return;
    // Not open, or an extension after all: through ws.
    this.bufferedAmount -= n;
    this.sendCopied(streamId, data);
  }

  /** DATA copied into a (pooled) frame and sent through ws, as the engine would without sendData. */
  private sendCopied(streamId: number, data: Uint8Array): void {
    this.send(encodeData(streamId, data, this.frameBuffer(HEADER_BYTES + data.length)));
  }

  /**
   * The gateway's DATA: a piece of a backend read lent to the engine whole (server/read-buffer.ts lendRead) goes to
   * the socket as it is, behind its headers, in the same turn's write (the socket is corked), the read held until
   * the socket wrote it; anything else is copied into a frame for ws, as the engine would. Writing beside ws is
   * safe while ws is open and negotiated no extension (client/masked-frames.ts explains why).
   * Measured (docs/BENCHMARKS.md): the gateway's CPU per GiB of one stream's download 5% lower.
   */
  private sendLent(socket: FrameSink, streamId: number, data: Uint8Array): void {
    if (this.ws.readyState !== this.ws.OPEN || this.ws.extensions !== '' || !holdIfLent(data)) {
      this.sendCopied(streamId, data);
      return;
    }
    const head = dataFrameHead(streamId, data.length);
    const n = head.length + data.length;
    this.turns?.cork();
    this.bufferedAmount += n;
    socket.write(head, noop);
    // Called once, also with an error: the socket refers to the bytes no more either way.
    socket.write(data, () => {
      releaseRead(data);
      this.sent(n);
    });
  }

  /** Large DATA frames are built in recycled buffers (shared/buffer-pool.ts), given back once ws wrote them. */
  frameBuffer(bytes: number): Uint8Array | undefined {
    return bytes >= SMALL_READ_BYTES ? framePool.take() : undefined;
  }

  send(message: Uint8Array, deferrable = false): void {
    const n = message.byteLength;
    this.bufferedAmount += n;
    // ws calls back with an error instead of throwing once closing/closed, so the count always comes back down;
    // either way ws no longer refers to the message then, so a pooled frame can be reused.
    const pooled = framePool.owns(message);
    this.turns?.cork(deferrable);
    // A client's control frame (the agent's WINDOWs): framed and masked in one write (client/masked-frames.ts).
    if (this.isClient && !pooled && this.socket && writeMaskedMessageBeside(this.ws, this.socket, message, () => this.sent(n))) return;
    this.ws.send(message, () => {
      if (pooled) framePool.give(message);
      this.sent(n);
    });
  }

  close(code: number, reason: string): void {
    try {
      this.ws.close(code, closeReasonBytes(reason));
    } catch (err) {
      // ws refuses close codes that may not be sent (e.g. 1006); the session is over either way.
      this.onInternalError(err);
      this.ws.terminate();
    }
  }

  /**
   * Feed the WebSocket's messages and close to the session. Call once, right after creating the session, and in
   * the turn ws attached the socket (a server's 'connection', a client's 'open'), before ws has read from it.
   *
   * With the socket given and no extension negotiated, the socket is read through a frame reader
   * (client/frame-reader.ts): each DATA payload reaches the engine as views of the socket's reads (on the
   * gateway's side unmasked in place), where ws would first join each message into a buffer of its own. ws still
   * reads pings, pongs, closes and anything amiss, and the 'message' listener below gets what ws reads.
   */
  bind(session: Session): void {
    this.session = session;
    this.ws.binaryType = 'nodebuffer';
    this.ws.on('message', (data: RawData, isBinary: boolean) => {
      this.onMessage?.();
      this.guard(() => {
        if (!isBinary) return session.receiveText();
        const buf = toBuffer(data);
        // Normally ws has refused it from the frame header already (limitFrameSize); this is the fallback.
        if (buf.byteLength > MAX_FRAME_BYTES) {
          return session.close(new SockgateError('SOCKGATE_ERR_PROTOCOL_TOO_BIG', `${buf.byteLength} bytes > ${MAX_FRAME_BYTES}`));
        }
        // No copy: ws hands out a fresh buffer per message, which the engine may keep (see Stream.onData).
        session.receive(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
      });
    });
    this.ws.on('close', (code: number, reason: Buffer) => {
      this.guard(() => session.transportClosed(code, reason.toString()));
    });
    if (this.socket && this.ws.extensions === '') {
      // The engine's receive methods never throw (shared/session.ts): no guard is needed around them here.
      const sink: ReaderSink = {
        receive: (message) => {
          this.onMessage?.();
          session.receive(message);
        },
        receiveDataHead: (streamId, length) => {
          this.onMessage?.();
          session.receiveDataHead(streamId, length);
        },
        receiveDataPiece: (piece) => session.receiveDataPiece(piece),
      };
      readFramesBeside(this.socket, sink, MAX_FRAME_BYTES, this.isClient ? undefined : unmaskInPlace);
    }
  }

  private sent(n: number): void {
    this.bufferedAmount -= n;
    const session = this.session;
    if (session && session.wantsDrain && this.bufferedAmount < this.drainBelowBytes) this.guard(() => session.transportDrained());
    // After the engine's queued DATA had its turn: backend reads get what room is left.
    if (this.readGate.waiting > 0) this.guard(() => this.readGate.pump());
  }

  /** Nothing may throw into ws's event handlers: a throw here is our bug, so the session ends as internal. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.onInternalError(err);
      try {
        this.session?.close(new SockgateError('SOCKGATE_ERR_INTERNAL', String(err), { cause: err }));
      } catch {
        this.ws.terminate();
      }
    }
  }
}

/**
 * PROTOCOL 1.4: refuse a mux message over MAX_FRAME_BYTES from its header, before buffering it. The ws server's
 * maxPayload is raw mode's limit for every connection; ws has no public per-connection limit, but its Receiver
 * reads `_maxPayload` afresh at each frame header, so tightening that field applies from the next frame on.
 * When the field is missing (a ws upgrade changed it) it says so on `log`: the length check in `bind` still applies.
 */
export function limitFrameSize(ws: WebSocket, log: Pick<FastifyBaseLogger, 'warn'>): void {
  /** The one private field of ws we touch (ws 8 lib/receiver.js). */
  interface WsReceiverInternals {
    _receiver?: { _maxPayload?: unknown };
  }
  const receiver = (ws as unknown as WsReceiverInternals)._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number') {
    log.warn('ws internals changed: mux frames are size-checked only after buffering');
    return;
  }
  receiver._maxPayload = MAX_FRAME_BYTES;
}

let sessionSeq = 0;

/**
 * Run one mux session on an upgraded WebSocket (subprotocol already checked). Never throws. Returns the running
 * session, or undefined when it failed to start (the WebSocket is terminated then).
 */
export function handleMuxSession(
  ws: WebSocket,
  ctx: MuxContext,
  meta: { remoteAddress: string; principal?: string; socket?: WsSocket },
): MuxSessionHandle | undefined {
  const log = ctx.log.child({ mux: ++sessionSeq, remote: meta.remoteAddress, ...(meta.principal !== undefined && { principal: meta.principal }) });
  try {
    return runSession(ws, ctx, log, meta.socket);
  } catch (err) {
    // E.g. limits the engine refuses (a maxWindowBytes outside INITIAL_WINDOW..MAX_WINDOW).
    log.error({ err }, 'mux session failed to start');
    ws.terminate();
    return undefined;
  }
}

function runSession(ws: WebSocket, ctx: MuxContext, log: FastifyBaseLogger, socket: WsSocket | undefined): MuxSessionHandle {
  const startedAt = performance.now();
  const { limits } = ctx;
  limitFrameSize(ws, log);

  /** Every backend socket of this session until it closes, including ones still flushing after a clean close. */
  const sockets = new Set<Duplex>();
  const totals = { streams: 0, bytesIn: 0, bytesOut: 0 };
  let sessionError: SockgateError | undefined;
  // Each OPEN costs a backend connect; a token bucket bounds the rate, peer RESETs included, so that open-then-reset
  // floods (rapid reset) are held to it. A second bucket of the same size counts OPENs refused for the rate: a
  // client that keeps sending them (past twice the rate, once the burst is spent) is not slowed down by OPEN_FAIL,
  // so it is closed with 1008 instead of being answered forever.
  const burst = limits.opensBurst ?? Math.ceil(limits.opensPerSecond ?? 1);
  const opens = limits.opensPerSecond ? new TokenBucket(limits.opensPerSecond, burst) : undefined;
  const refusals = limits.opensPerSecond ? new TokenBucket(limits.opensPerSecond, burst) : undefined;
  const admitOpen = (): SockgateError | undefined => {
    const now = performance.now();
    if (!opens || opens.take(now)) return undefined;
    if (!refusals!.take(now)) {
      log.info({ opensPerSecond: limits.opensPerSecond, opensBurst: burst }, 'mux session closed for an OPEN flood');
      session.close(new SockgateError('SOCKGATE_ERR_SESSION_POLICY', 'OPEN flood: streams opened past opensPerSecond'));
    }
    return new SockgateError('SOCKGATE_ERR_STREAM_RATE_LIMITED', `${limits.opensPerSecond} opens/s`);
  };
  const maxBuffered = limits.maxTransportBufferedBytes ?? DEFAULT_MAX_TRANSPORT_BUFFERED_BYTES;

  let idle: IdleTimer | undefined;
  /** The handle returned below, once made: streams report to its watcher when they close. */
  const ref: { handle?: MuxSessionHandle } = {};
  const settled = (): void => ref.handle?.onSettled?.();

  const transport = new WsTransport(ws, maxBuffered, (err) => log.error({ err }, 'mux session internal error'), socket);
  const session = new Session({
    role: 'server',
    transport,
    maxWindowBytes: limits.maxWindowBytes,
    maxSessionWindowBytes: limits.maxSessionWindowBytes,
    maxTransportBufferedBytes: maxBuffered,
    maxIncomingStreams: limits.maxStreamsPerSession,
    admitOpen: opens ? admitOpen : undefined,
    onOpenRefused: ctx.metrics ? (route, err) => ctx.metrics!.failed(route, err.code) : undefined,
    // A peer RESET takes a token too; it is never refused (the stream is gone either way), so the OPENs after it pay.
    onPeerReset: opens ? () => opens.take(performance.now()) : undefined,
    onStream(stream, name) {
      totals.streams++;
      try {
        bridgeStream(stream, ctx.resolveRoute(name), { ctx, log, sockets, totals, idle, settled, readGate: transport.readGate });
      } catch (err) {
        log.error({ err, route: name, stream: stream.id }, 'mux stream failed to start');
        abortStream(stream, new SockgateError('SOCKGATE_ERR_STREAM_INTERNAL'));
      }
    },
    onClose(err) {
      sessionError = err;
      idle?.stop();
      // Streams were closed (and their sockets destroyed) just before; this also takes sockets still flushing.
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
  });
  if (limits.idleTimeoutMs) idle = new IdleTimer(limits.idleTimeoutMs, () => session.close(new SockgateError('SOCKGATE_ERR_SESSION_IDLE_TIMEOUT')));
  transport.bind(session);
  ws.on('error', (err: Error) => log.debug({ err }, 'mux websocket error'));
  ws.on('close', (code: number, reason: Buffer) => {
    log.info(
      {
        ...totals,
        ms: Math.round(performance.now() - startedAt),
        code,
        reason: reason.toString(),
        err: sessionError?.code,
      },
      'mux session closed',
    );
  });
  log.info('mux session open');
  // One PING gives the engine a round-trip time, which window auto-tuning needs (PROTOCOL 5.5); without it,
  // uploads stay at the initial window per round trip. A session that ends first just rejects it.
  session.ping().catch(() => {});
  ref.handle = {
    session,
    transport,
    get busy() {
      return session.streamCount > 0 || sockets.size > 0;
    },
    onSettled: undefined,
  };
  return ref.handle;
}

interface BridgeScope {
  ctx: MuxContext;
  log: FastifyBaseLogger;
  sockets: Set<Duplex>;
  totals: { bytesIn: number; bytesOut: number };
  /** Touched on stream bytes either way (idleTimeoutMs). */
  idle: IdleTimer | undefined;
  /** Tell the session's watchers (drain) that a stream or a backend connection closed. */
  settled: () => void;
  readGate: ReadGate;
}

/**
 * Serve one stream the client opened: check the route, then hand the stream to the shared bridge
 * (server/bridge.ts), which connects the route's backend (a socket, or an agent's stream) and pipes bytes both ways
 * with credit returned only as the backend accepts data, FIN mapped to end() / EOF, and every failure mapped to a
 * code. This adds the mux session's bookkeeping: logs, metrics, idle timer, totals and drain notifications.
 */
function bridgeStream(stream: Stream, route: Route | undefined, scope: BridgeScope): void {
  const { ctx, log, sockets } = scope;
  const startedAt = performance.now();
  // Permission before existence: a credential limited to some routes learns nothing about the others.
  const denied = ctx.authorize?.(stream.route);
  if (denied || !route) {
    stream.onClose = (err) => {
      logClose(err);
      scope.settled();
    };
    const err = denied ?? new SockgateError('SOCKGATE_ERR_ROUTE_UNKNOWN', stream.route);
    ctx.metrics?.failed(stream.route, err.code);
    stream.reject(err);
    return;
  }
  /** Given by metrics when the backend connection opens; called when the stream closes. */
  let measured: (() => void) | undefined;

  bridge(stream, {
    connect: (onread) => ctx.connect(route.target, onread),
    log,
    fields: { route: route.name, stream: stream.id },
    sockets,
    onActivity: scope.idle ? () => scope.idle!.touch() : undefined,
    onOpen: () => {
      measured = ctx.metrics?.opened(route.name, streamBytes(stream), performance.now() - startedAt);
      log.info({ route: route.name, stream: stream.id }, 'mux stream open');
    },
    // Not when the client reset the stream or the session ended while connecting: nothing was refused then.
    onRefused: (err) => ctx.metrics?.failed(route.name, err.code),
    onClose: (err) => {
      measured?.();
      logClose(err);
      scope.settled();
    },
    onSocketClose: () => scope.settled(),
    readGate: scope.readGate,
  });

  function logClose(err: SockgateError | undefined): void {
    scope.totals.bytesIn += stream.bytesIn;
    scope.totals.bytesOut += stream.bytesOut;
    const fields = {
      route: stream.route,
      stream: stream.id,
      bytesIn: stream.bytesIn,
      bytesOut: stream.bytesOut,
      ms: Math.round(performance.now() - startedAt),
      err: err?.code,
      reason: err?.message,
    };
    log.info(fields, 'mux stream closed');
  }
}

/** A stream's byte counts as metrics read them: DATA from the client goes to the backend, DATA sent goes to the client. */
function streamBytes(stream: Stream): { readonly toBackend: number; readonly toClient: number } {
  return {
    get toBackend() {
      return stream.bytesIn;
    },
    get toClient() {
      return stream.bytesOut;
    },
  };
}
