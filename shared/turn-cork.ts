/**
 * One write per turn: a socket's writes are held from the first frame of a turn of the event loop until that
 * turn's promise jobs have run, then handed to the kernel together (one writev). Each write to a socket runs the
 * network stack and wakes the reader; a stream sending 64 KiB frames one by one paid that per frame. Used by the
 * Node SDK's WebSocket (client/node.ts) and the gateway's and agent's transport (server/mux.ts). No Node-only API:
 * the caller passes the schedulers (process.nextTick and setImmediate in Node).
 *
 * A write may also be deferrable (WINDOW frames): a turn that made only deferrable writes is held until the event
 * loop has run the rest of its I/O callbacks (setImmediate), so that the credit returned while reading many socket
 * reads in one go leaves in one write instead of one per read. Any other write in the meantime releases
 * everything at the end of its own turn, as before: nothing but a deferrable write ever waits past its turn.
 */

/** The part of a Node stream.Writable (a net.Socket) this needs. */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

export class TurnCork {
  private corked = false;
  /** A release is scheduled at the end of the turn / after the loop's I/O callbacks. */
  private turnEndPending = false;
  private ioEndPending = false;

  constructor(
    private readonly socket: Corkable,
    /** Runs its callback once the current turn's promise jobs have run: process.nextTick in Node. */
    private readonly afterTurn: (release: () => void) => void,
    /**
     * Runs its callback once the event loop has run its pending I/O callbacks: setImmediate in Node. Without
     * it, deferrable writes are released at the end of their turn like the others.
     */
    private readonly afterIo: (release: () => void) => void = afterTurn,
  ) {}

  /**
   * Call before each write: the first corks the socket. A write that is not `deferrable` is released at the end
   * of its turn; a deferrable one once the loop's pending I/O callbacks have run, unless a write that is not comes
   * first. Every corked write has a release scheduled.
   */
  cork(deferrable = false): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
    }
    if (!deferrable) {
      if (this.turnEndPending) return;
      this.turnEndPending = true;
      this.afterTurn(this.turnEnded);
    } else if (!this.turnEndPending && !this.ioEndPending) {
      this.ioEndPending = true;
      this.afterIo(this.ioEnded);
    }
  }

  private readonly turnEnded = (): void => {
    this.turnEndPending = false;
    this.release();
  };

  private readonly ioEnded = (): void => {
    this.ioEndPending = false;
    this.release();
  };

  private release(): void {
    if (!this.corked) return;
    this.corked = false;
    this.socket.uncork();
  }
}
