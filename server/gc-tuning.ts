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
 * Turn V8's incremental marking off for this process, unless SOCKGATE_INCREMENTAL_GC=1. Returns whether it changed
 * the flag.
 *
 * Call it before anything else is loaded: the first statement of the entry module, with everything else imported
 * dynamically after it (as server/cli.ts does). Changing the flag while V8 is marking the heap on its worker
 * threads aborts the process (a V8 fatal error or a segfault): when the CLI flipped it after loading Fastify, 20
 * of 300 start-ups died that way. An application embedding the plugin is better served by
 * `node --no-incremental-marking`.
 */
export function tuneGcForThroughput(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env[INCREMENTAL_GC_ENV] === '1') return false;
  setFlagsFromString('--no-incremental-marking');
  return true;
}
