// Types for bench/lean-ws.mjs (the benchmark is plain JavaScript; test/*/bench-lean-ws.test.ts import it).
import type { Buffer } from 'node:buffer';

export const READ_BUFFER: number;
export class Delivery {
  push(view: Uint8Array): void;
  set(fn: (view: Uint8Array) => void): void;
}
export function maskedFrame(opcode: number, payload: Uint8Array): Buffer;
export class FrameReader {
  constructor(data: (view: Uint8Array) => void, control: (opcode: number, payload: Buffer) => void);
  push(chunk: Uint8Array): void;
}
export interface LeanConn {
  onData(fn: (view: Uint8Array) => void): void;
  write(buf: Uint8Array): Promise<void>;
  pauseReading(): void;
  unsent(): number;
  close(): void;
  error(): Error | undefined;
  onClose(fn: (err: Error) => void): void;
}
export function leanWsConn(url: string, protocols?: string[]): Promise<LeanConn>;
