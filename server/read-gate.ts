/**
 * Read a bulk backend only when what it reads can leave at once (mux mode, backend -> client; the gateway's
 * sessions and the agent's).
 *
 * When many streams of a session download at once, the WebSocket is the bottleneck. Without the gate every backend
 * socket read as soon as its stream had sent its last bytes, so most reads arrived while the transport was full:
 * the engine copied them out of the shared read buffer and kept them until it drained (Stream.write(chunk,
 * borrowed), shared/session.ts). At 100 streams that was ~94% of the bytes: a copy, an allocation, and up to a
 * read per stream of memory gone cold before it was sent.
 *
 * The gate leaves those bytes in the backend's kernel buffer instead. While two or more of the session's sockets are
 * in bulk transfers (their last read was SMALL_READ_BYTES or more), a bulk socket that was pushed back, or that read
 * while the transport had no room for another read or other sockets were waiting, is paused and queued here; as the
 * transport drains, queued sockets are resumed in turn, as many as the transport has room for, so that what they
 * read goes straight into DATA frames. A socket whose reads are small (a terminal, a keystroke's echo) never waits
 * here: the engine's round-robin queue serves it as before. Nor does a lone bulk socket (see `contended`).
 *
 * Room is the transport's limit (maxTransportBufferedBytes) less what it holds and what reads already granted may
 * bring. A resumed socket reads (if its backend sent anything) in the next poll phase of the event loop, so grants
 * count until the second check phase after the first of them (setImmediate twice), when all expire at once: a quiet
 * backend never holds room for longer. A grant still counts after its read came (its bytes then count twice, in
 * the transport and here): freeing it at once let the gate grant reads that the streams' credit could not send,
 * and the engine held 3-4 MiB of their copies at 32 streams instead of under 1 MiB (the test in
 * test/integration/mux-limits.test.ts).
 */
import { nextTick } from 'node:process';
import { setImmediate } from 'node:timers';

export class ReadGate {
  /** Resume callbacks of paused sockets, in turn order; each returns false when its socket is gone. */
  private readonly queue: Array<() => boolean> = [];
  /** Bytes the reads granted recently may bring. */
  private granted = 0;
  private expiryPending = false;
  private pumpPending = false;
  /** Bridged sockets now in a bulk transfer (bulkStarted, bulkEnded). */
  private bulkSockets = 0;

  constructor(
    /** The transport's bytes not yet handed to the kernel. */
    private readonly transport: { readonly bufferedAmount: number },
    /** True while the engine has DATA queued for the transport (Session.wantsDrain). */
    private readonly wantsDrain: () => boolean,
    /** The transport's limit: reads are granted while it holds less than this. */
    private readonly roomBytes: number,
    /** The most one read brings (the read buffer's size). */
    private readonly readBytes: number,
  ) {}

  /** A socket's reads became large (SMALL_READ_BYTES or more): it is in a bulk transfer. */
  bulkStarted(): void {
    this.bulkSockets++;
  }

  /** A socket's reads became small again, or it reached EOF, or its stream closed. */
  bulkEnded(): void {
    this.bulkSockets = Math.max(0, this.bulkSockets - 1);
  }

  /**
   * Two or more sockets are in bulk transfers: they compete for the transport, and the bridge sends them through the
   * gate. A lone one reads as it did without a gate: what the transport cannot take at once is one read's tail, which
   * the engine copies while it is still in the cache (measured: no gain from gating it, and a few percent lost).
   */
  get contended(): boolean {
    return this.bulkSockets >= 2;
  }

  /** Sockets paused here, waiting for their turn. */
  get waiting(): number {
    return this.queue.length;
  }

  /** After a read whose bytes all went out: may the socket read on? Not while others wait or room is short. */
  mayReadOn(): boolean {
    return this.queue.length === 0 && this.hasRoom();
  }

  /**
   * Queue a paused socket; `resume` is called when the transport has room for its next read, never before the
   * current turn ends: a socket's `onread` callback that returns false stops the socket's reading after it returns,
   * which would undo a resume made during it.
   */
  wait(resume: () => boolean): void {
    this.queue.push(resume);
    if (this.pumpPending) return;
    this.pumpPending = true;
    nextTick(this.pumpSoon);
  }

  /**
   * Take a socket out of the queue (its stream closed). Without it, a session whose transport stays full while its
   * client keeps opening and closing streams would keep a dead entry per stream until room came.
   */
  forget(resume: () => boolean): void {
    const i = this.queue.indexOf(resume);
    if (i >= 0) this.queue.splice(i, 1);
  }

  /** Resume waiting sockets, in turn, while there is room. Call whenever the transport's bytes went out. */
  pump(): void {
    while (this.queue.length > 0 && this.hasRoom()) {
      if (!this.queue.shift()!()) continue;
      this.granted += this.readBytes;
      if (!this.expiryPending) {
        this.expiryPending = true;
        setImmediate(this.afterCheck);
      }
    }
  }

  private readonly pumpSoon = (): void => {
    this.pumpPending = false;
    this.pump();
  };

  private hasRoom(): boolean {
    return !this.wantsDrain() && this.transport.bufferedAmount + this.granted < this.roomBytes;
  }

  /** The check phase after the grants: their reads come in the next poll phase, so expire at the check after it. */
  private readonly afterCheck = (): void => {
    setImmediate(this.expire);
  };

  private readonly expire = (): void => {
    this.expiryPending = false;
    this.granted = 0;
    this.pump();
  };
}
