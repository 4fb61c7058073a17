/**
 * A byte queue whose entries are at most bytes / JOIN_BLOCK_BYTES (plus one per large chunk), never one per chunk
 * pushed: small chunks are copied into shared blocks, large ones kept as they are. A peer's window bounds the
 * bytes it can make us hold; this keeps its tiny frames from multiplying them by the bookkeeping each chunk
 * costs (about 200 bytes). Used where peer bytes wait for their reader: the gateway's bridge (server/bridge.ts)
 * and the SDK's sockets (client/socket.ts). No Node-only API.
 */
const JOIN_BLOCK_BYTES = 16 * 1024;

export class JoinedQueue {
  private blocks: { bytes: Uint8Array; used: number }[] = [];
  /** Bytes queued. */
  bytes = 0;

  /** Queue a copy of a small chunk (joined with its neighbours); a large one is kept as it is. */
  push(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    const last = this.blocks.at(-1);
    if (last && last.used + chunk.length <= last.bytes.length) {
      last.bytes.set(chunk, last.used);
      last.used += chunk.length;
    } else if (chunk.length >= JOIN_BLOCK_BYTES) {
      this.blocks.push({ bytes: chunk, used: chunk.length });
    } else {
      const bytes = new Uint8Array(JOIN_BLOCK_BYTES);
      bytes.set(chunk);
      this.blocks.push({ bytes, used: chunk.length });
    }
  }

  /** The oldest block's bytes, or undefined when empty. */
  shift(): Uint8Array | undefined {
    const block = this.blocks.shift();
    if (!block) return undefined;
    this.bytes -= block.used;
    return block.bytes.subarray(0, block.used);
  }

  clear(): void {
    this.blocks = [];
    this.bytes = 0;
  }
}
