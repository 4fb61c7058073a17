/**
 * Garbage collection for a process that moves bulk bytes (docs/BENCHMARKS.md, "What made sockgate faster").
 *
 * Every socket read costs an ArrayBuffer that V8 counts as external memory until it is swept. In a process with
 * a Fastify app loaded (~15 MB of live heap), a sustained upload keeps that count near the heap's growth limit,
 * and V8's incremental marking starts a mark-compact every ~16 MB: measured 30-70 mark-compacts per GiB and 2-3 s
 * of CPU per GiB, against 1 mark-compact and about 1.1 s without incremental marking. Without it V8 still
 * collects the young generation as before and runs a full (parallel, stop-the-world) collection when the old
 * generation reaches its limit; the gateway's old generation is small, so those pauses are short.
 */
import { setFlagsFromString } from 'node:v8';

/** Set to 1 to keep V8's default (incremental marking) in the sockgate CLI. */
export const INCREMENTAL_GC_ENV = 'SOCKGATE_INCREMENTAL_GC';

/**
 * Turn V8's incremental marking off for this process, unless SOCKGATE_INCREMENTAL_GC=1. The CLI calls it first
 * thing; an application that registers the plugin may call it too (or run `node --no-incremental-marking`).
 * Returns whether it changed the flag.
 */
export function tuneGcForThroughput(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env[INCREMENTAL_GC_ENV] === '1') return false;
  setFlagsFromString('--no-incremental-marking');
  return true;
}
