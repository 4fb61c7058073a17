/**
 * One write per turn: a socket's writes are held from the first frame of a turn of the event loop until that
 * turn's promise jobs have run, then handed to the kernel together (one writev). Each write to a socket runs the
 * network stack and wakes the reader; a stream sending 64 KiB frames one by one paid that per frame. Used by the
 * Node SDK's WebSocket (client/node.ts) and the gateway's and agent's transport (server/mux.ts). No Node-only API:
 * the caller passes the scheduler (process.nextTick in Node).
 */

/** The part of a Node stream.Writable (a net.Socket) this needs. */
export interface Corkable {
  cork(): void;
  uncork(): void;
}

export class TurnCork {
  private corked = false;

  constructor(
    private readonly socket: Corkable,
    /** Runs its callback once the current turn's promise jobs have run: process.nextTick in Node. */
    private readonly afterTurn: (release: () => void) => void,
  ) {}

  /** Call before each write: the first in a turn corks the socket, and schedules the uncork. */
  cork(): void {
    if (this.corked) return;
    this.corked = true;
    this.socket.cork();
    this.afterTurn(this.release);
  }

  private readonly release = (): void => {
    this.corked = false;
    this.socket.uncork();
  };
}
