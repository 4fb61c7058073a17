/**
 * Equal-sized buffers for reuse, so that a data path that sends a buffer and learns when it left (ws's send
 * callback) allocates nothing per message: take() one, give() it back after its last use. Used for the gateway's
 * backend reads and DATA frames (server/read-buffer.ts, server/mux.ts) and the Node SDK's DATA frames
 * (client/transport.ts). No Node-only API.
 */
export class BufferPool {
  private readonly free: ArrayBuffer[] = [];
  /** The ArrayBuffers this pool allocated, to recognise them (and views of them) when they come back. */
  private readonly mine = new WeakSet<ArrayBufferLike>();

  constructor(
    /** Bytes per buffer. */
    readonly size: number,
    /** Free buffers kept; more are left to the garbage collector. */
    private readonly maxFree: number,
    /**
     * The shortest view of a pooled buffer its users hand back (0: any). A shorter one is not this pool's, and is
     * not asked for its buffer: V8 answers that for a typed array of 64 bytes or less (an 18-byte WINDOW) by moving
     * it off its heap, an allocation per message.
     */
    private readonly minViewBytes = 0,
  ) {}

  /** A buffer of `size` bytes, not zeroed when it is a recycled one. */
  take(): Uint8Array<ArrayBuffer> {
    let memory = this.free.pop();
    if (!memory) {
      memory = new ArrayBuffer(this.size);
      this.mine.add(memory);
    }
    return new Uint8Array(memory);
  }

  /** Whether `bytes` is (a view of) one of this pool's buffers, at least minViewBytes long. */
  owns(bytes: Uint8Array): boolean {
    return bytes.byteLength >= this.minViewBytes && this.mine.has(bytes.buffer);
  }

  /** Take back a buffer from take(), or any view of one. Give each buffer back once, after its last use. */
  give(bytes: Uint8Array): void {
    if (this.free.length < this.maxFree && this.owns(bytes)) this.free.push(bytes.buffer as ArrayBuffer);
  }
}
