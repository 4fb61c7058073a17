/**
 * WebSocket frames read off the socket under a `ws` WebSocket, so that a DATA frame's payload reaches its stream as
 * views of the socket's reads, not copied (Node only: the SDK's NodeWebSocket in client/node.ts and the agent's dial
 * read a gateway's frames; the gateway, through WsTransport in server/mux.ts, reads a client's).
 *
 * A socket read is at most 64 KiB and a full DATA message 65,552 bytes with its WebSocket header, so nearly every
 * message spans two reads; ws joins them into a fresh buffer (an allocation and a copy of each payload) before
 * it emits the message. Here the payload goes on in the pieces the reads hold it in (two per message, on
 * average), each a view of its read; Node gives every socket read memory of its own, so nothing else writes to
 * it.
 *
 * The gateway's side is the same with one difference: a client masks every frame (RFC 6455 5.3), so there each
 * frame must be masked (ws fails an unmasked one with 1002; so does the reader, by leaving it to ws), and the
 * reader unmasks each payload piece in place, in the socket's read, as ws unmasks a message in place: ws joined each
 * message first (a 64 KiB message spans two reads), here nothing is copied. A reader given an `unmask` function
 * reads a client's frames; one without reads a server's.
 *
 * The reader takes apart only what it must to do that, and leaves every other frame to ws, byte for byte:
 * - a binary message (FIN set, no RSV bits, masked as above, at most `maxMessageBytes`) goes to the sink: a DATA frame
 *   with a well-formed header as that header (receiveDataHead), then its payload in pieces (receiveDataPiece); any
 *   other binary message whole (receive), for the engine to decode and check.
 * - a well-formed ping or pong goes to ws, which answers pings; reading resumes after it.
 * - anything else is handed over: ws reads it and everything after it, as it would have without this reader. That
 *   is a close frame (ws runs the close handshake, and ignores what follows), a text message (ws emits it), and
 *   whatever ws fails the connection for with its own close code (a fragment, a continuation, RSV bits, a frame
 *   masked when it must not be or unmasked when it must, a message over the limit, a reserved opcode: 1002
 *   protocol, 1009 too big). The gateway sends none of these but the close; the SDK sends none but the close.
 *
 * Frames reach the sink and ws in the order they arrived. readFramesBeside() puts a reader in front of ws on its
 * socket. No Node-only API (the socket is typed by what is used of it).
 */
import { FrameType, HEADER_BYTES, MAX_DATA_PAYLOAD } from '../shared/constants.js';
import { decodeHeader } from '../shared/decode.js';

/** ws's side of the socket. */
export interface WsReading {
  /** One ping or pong frame's bytes, in one or more calls, for ws to read. */
  frame(bytes: Uint8Array): void;
  /** ws reads the socket from here on: `rest` (possibly empty) is what is left of the current read. */
  handOver(rest: Uint8Array): void;
}

/**
 * Unmask `bytes` in place: they were masked with `key` starting at the key's byte `keyOffset` (0 to 3), i.e. the
 * message's bytes from an offset of that remainder mod 4.
 */
export type Unmask = (bytes: Uint8Array, key: Uint8Array, keyOffset: number) => void;

/** Where the frames go: the engine's methods of the same names (shared/session.ts), or a wrapper of them. */
export interface FrameSink {
  /** One whole binary message that is not a well-formed DATA frame, in memory of its own. */
  receive(message: Uint8Array): void;
  /** A DATA frame's header: `length` (1 to MAX_DATA_PAYLOAD) payload bytes for `streamId` (not 0) follow. */
  receiveDataHead(streamId: number, length: number): void;
  /** The next piece of the current DATA frame's payload: a view of a socket read (unmasked, when it was masked). */
  receiveDataPiece(piece: Uint8Array): void;
}

const enum State {
  /** Reading a frame's header (WebSocket header, and the 6-byte frame header of a binary message). */
  Head,
  /** Passing the current DATA payload on in pieces. */
  Data,
  /** Gathering a binary message that is not DATA. */
  Message,
  /** Passing a ping's or pong's payload to ws. */
  Control,
  /** ws reads everything from here on. */
  HandedOver,
}

/** WebSocket header of a frame: 2 bytes, then 0, 2 or 8 length bytes, then 4 mask bytes if masked. */
const MAX_HEAD_BYTES = 2 + 8 + 4 + HEADER_BYTES;
const OPCODE_BINARY = 0x2;
const OPCODE_PING = 0x9;
const OPCODE_PONG = 0xa;
const MAX_CONTROL_PAYLOAD = 125;

export class FrameReader {
  private state = State.Head;
  /** The current frame's header bytes so far (copied: they may span reads). */
  private readonly head = new Uint8Array(MAX_HEAD_BYTES);
  private headBytes = 0;
  /** Payload bytes of the current frame still to come. */
  private remaining = 0;
  private message: Uint8Array | undefined;
  private messageAt = 0;
  /** The current frame's masking key (a client's frames). */
  private readonly key = new Uint8Array(4);
  /** Bytes of the current message already unmasked (DATA: its frame header and the pieces passed on). */
  private keyAt = 0;
  /** The frame header of a masked binary message, unmasked to be checked. */
  private readonly frameHead = new Uint8Array(HEADER_BYTES);

  constructor(
    private readonly sink: FrameSink,
    private readonly ws: WsReading,
    /** The largest message accepted (ws's maxPayload); a larger one is left to ws, which refuses it. */
    private readonly maxMessageBytes: number,
    /** Given: the frames are a client's, each masked, unmasked with this; not given: a server's, none masked. */
    private readonly unmask?: Unmask,
  ) {}

  /** The next bytes read from the socket. */
  push(chunk: Uint8Array): void {
    let at = 0;
    while (at < chunk.length) {
      switch (this.state) {
        case State.Head:
          at = this.readHead(chunk, at);
          break;
        case State.Data: {
          const n = Math.min(this.remaining, chunk.length - at);
          this.remaining -= n;
          if (this.remaining === 0) this.state = State.Head;
          const piece = new Uint8Array(chunk.buffer, chunk.byteOffset + at, n);
          if (this.unmask) {
            this.unmask(piece, this.key, this.keyAt & 3);
            this.keyAt += n;
          }
          this.sink.receiveDataPiece(piece);
          at += n;
          break;
        }
        case State.Message: {
          const n = Math.min(this.remaining, chunk.length - at);
          this.message!.set(chunk.subarray(at, at + n), this.messageAt);
          this.messageAt += n;
          this.remaining -= n;
          at += n;
          if (this.remaining === 0) this.endMessage();
          break;
        }
        case State.Control: {
          const n = Math.min(this.remaining, chunk.length - at);
          this.remaining -= n;
          if (this.remaining === 0) this.state = State.Head;
          this.ws.frame(chunk.subarray(at, at + n));
          at += n;
          break;
        }
        case State.HandedOver:
          this.ws.handOver(at === 0 ? chunk : chunk.subarray(at));
          return;
      }
    }
  }

  /** Take header bytes from `chunk` at `at`; once the header is complete, decide where the frame goes. */
  private readHead(chunk: Uint8Array, at: number): number {
    const head = this.head;
    for (;;) {
      const need = this.headNeeded();
      if (need === 0) return at;
      if (need < 0) {
        // Handed over: ws reads this frame's header, the rest of this read, and all later reads.
        this.state = State.HandedOver;
        const headBytes = this.headBytes;
        this.headBytes = 0;
        this.ws.handOver(concatBytes(head.subarray(0, headBytes), chunk.subarray(at)));
        return chunk.length;
      }
      while (this.headBytes < need) {
        if (at === chunk.length) return at;
        head[this.headBytes++] = chunk[at++]!;
      }
    }
  }

  /**
   * How many header bytes the frame needs before it can be routed; 0 once it has been (the state changed), -1 when
   * ws is to read it and all that follows. The header never holds more bytes than the last answer asked for.
   */
  private headNeeded(): number {
    const head = this.head;
    if (this.headBytes < 2) return 2;
    const b0 = head[0]!;
    const b1 = head[1]!;
    const len7 = b1 & 0x7f;
    const masked = (b1 & 0x80) !== 0;
    const wsHeadBytes = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
    if (this.headBytes < wsHeadBytes) return wsHeadBytes;
    const fin = (b0 & 0x80) !== 0;
    const rsv = b0 & 0x70;
    const opcode = b0 & 0x0f;
    const length = len7 < 126 ? len7 : len7 === 126 ? (head[2]! << 8) | head[3]! : u64Length(head);
    const maskedRight = masked === (this.unmask !== undefined);

    if ((opcode === OPCODE_PING || opcode === OPCODE_PONG) && fin && rsv === 0 && maskedRight && length <= MAX_CONTROL_PAYLOAD) {
      // As read: ws unmasks a client's control frame itself.
      this.ws.frame(head.slice(0, wsHeadBytes));
      this.begin(length, length > 0 ? State.Control : State.Head);
      return 0;
    }
    if (opcode !== OPCODE_BINARY || !fin || rsv !== 0 || !maskedRight || length > this.maxMessageBytes) return -1;
    if (masked) this.key.set(head.subarray(wsHeadBytes - 4, wsHeadBytes));
    if (length > HEADER_BYTES) {
      if (this.headBytes < wsHeadBytes + HEADER_BYTES) return wsHeadBytes + HEADER_BYTES;
      let frameHead = head.subarray(wsHeadBytes, wsHeadBytes + HEADER_BYTES);
      if (this.unmask) {
        // Unmasked in a copy: should the message be gathered whole below, it is unmasked whole there.
        this.frameHead.set(frameHead);
        frameHead = this.frameHead;
        this.unmask(frameHead, this.key, 0);
      }
      const data = dataHeader(frameHead);
      const payload = length - HEADER_BYTES;
      if (data && payload <= MAX_DATA_PAYLOAD) {
        this.begin(payload, State.Data);
        this.keyAt = HEADER_BYTES;
        this.sink.receiveDataHead(data.streamId, payload);
        return 0;
      }
    }
    // Any other binary message: gathered whole (with the frame header bytes already read) for the engine.
    this.message = new Uint8Array(length);
    this.message.set(head.subarray(wsHeadBytes, this.headBytes));
    this.messageAt = this.headBytes - wsHeadBytes;
    this.begin(length - this.messageAt, State.Message);
    if (this.remaining === 0) this.endMessage();
    return 0;
  }

  private begin(remaining: number, state: State): void {
    this.headBytes = 0;
    this.remaining = remaining;
    this.state = state;
  }

  private endMessage(): void {
    const message = this.message!;
    this.message = undefined;
    this.state = State.Head;
    this.unmask?.(message, this.key, 0);
    this.sink.receive(message);
  }
}

/** A well-formed DATA frame header (PROTOCOL 2, checked by the codec's own decodeHeader), or undefined. */
function dataHeader(bytes: Uint8Array): { streamId: number } | undefined {
  try {
    const header = decodeHeader(bytes);
    return header.type === FrameType.DATA ? header : undefined;
  } catch {
    // Malformed: the message goes to the engine whole, whose decoder refuses it with the precise code.
    return undefined;
  }
}

/** A 64-bit WebSocket length (bytes 2-9 of the header); anything of 2^32 or more as Infinity (over any limit). */
function u64Length(head: Uint8Array): number {
  if ((head[2]! | head[3]! | head[4]! | head[5]!) !== 0) return Infinity;
  return ((head[6]! << 24) | (head[7]! << 16) | (head[8]! << 8) | head[9]!) >>> 0;
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** What readFramesBeside() uses of a net.Socket (or TLSSocket): its 'data' listeners. */
export interface ReadableSocket {
  listeners(event: 'data'): unknown[];
  on(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
  removeListener(event: 'data', listener: (chunk: Uint8Array) => void): unknown;
}

/**
 * Read the socket under a `ws` WebSocket through a FrameReader, in place of ws's own 'data' listener: call it from
 * a client WebSocket's 'open', or a server's 'connection' in the same turn (ws has just attached its listener then,
 * and read nothing yet; `unmask` given on the server's side, see FrameReader). ws keeps reading
 * the pings and pongs, and gets the socket back for good at the first frame the reader leaves to it (a close,
 * say), its listener attached again as it attached it, so that ws detaches it itself when it fails or closes the
 * connection. False, and ws left to read as before, unless ws's one listener is there; the caller also makes sure
 * that no extension was negotiated (ws would inflate what it reads).
 */
export function readFramesBeside(socket: ReadableSocket, sink: FrameSink, maxMessageBytes: number, unmask?: Unmask): boolean {
  const listeners = socket.listeners('data');
  const wsOnData = listeners[0];
  if (listeners.length !== 1 || typeof wsOnData !== 'function') return false;
  const toWs = (bytes: Uint8Array): void => void (wsOnData as (this: ReadableSocket, chunk: Uint8Array) => void).call(socket, bytes);
  let handedOver = false;
  const reader = new FrameReader(
    sink,
    {
      frame: toWs,
      handOver: (rest) => {
        if (!handedOver) {
          handedOver = true;
          socket.removeListener('data', onData);
          socket.on('data', wsOnData as (chunk: Uint8Array) => void);
        }
        if (rest.length > 0) toWs(rest);
      },
    },
    maxMessageBytes,
    unmask,
  );
  const onData = (chunk: Uint8Array): void => reader.push(chunk);
  socket.removeListener('data', wsOnData as (chunk: Uint8Array) => void);
  socket.on('data', onData);
  return true;
}
