// Types for bench/pattern.mjs (the benchmark is plain JavaScript; test/unit/bench-pattern.test.ts imports it).
import type { Buffer } from 'node:buffer';

export const MESSAGE: number;
export const FILLER: Buffer;
export const PERIOD: number;
export function fillPattern<T extends Uint8Array>(buf: T, period: number, message: number): T;
export const PATTERN: Buffer;
export function patternAt(offset: number, len?: number): Buffer;
export class PatternCheck {
  received: number;
  error: string | undefined;
  update(chunk: Uint8Array): void;
}
