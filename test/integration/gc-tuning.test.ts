/**
 * server/gc-tuning.ts in a real Node process: the CLI turns V8's incremental marking off (it set off runs of
 * mark-compacts under sustained transfers, docs/BENCHMARKS.md), and SOCKGATE_INCREMENTAL_GC=1 keeps it.
 * A child process allocates enough for V8 to start incremental marking when it may, and traces it.
 */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, root } from '../helpers/cli.js';

const tuning = pathToFileURL(join(root, 'dist', 'server', 'gc-tuning.js')).href;
// 3,000 arrays of 20,000 numbers, up to 300 alive at once: old-generation growth V8 marks incrementally.
const script = `
  const { tuneGcForThroughput } = await import(${JSON.stringify(tuning)});
  console.log('changed', tuneGcForThroughput());
  let keep = [];
  for (let i = 0; i < 3000; i++) { keep.push(new Array(20000).fill(i)); if (keep.length > 300) keep = []; }
`;

function markingStarts(env: Record<string, string>): { starts: number; changed: boolean } {
  const out = execFileSync(process.execPath, ['--trace-incremental-marking', '--input-type=module', '-e', script], {
    env: { ...process.env, ...env },
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
  }).toString();
  return { starts: out.split('\n').filter((l) => l.includes('[IncrementalMarking] Start (')).length, changed: out.includes('changed true') };
}

describe('GC tuning for the CLI', () => {
  beforeAll(() => ensureBuilt(), 180_000);

  it('turns incremental marking off by default', () => {
    expect(markingStarts({ SOCKGATE_INCREMENTAL_GC: '' })).toEqual({ starts: 0, changed: true });
  });

  it('keeps V8 default with SOCKGATE_INCREMENTAL_GC=1 (the same allocations then start incremental marking)', () => {
    const r = markingStarts({ SOCKGATE_INCREMENTAL_GC: '1' });
    expect(r.changed).toBe(false);
    expect(r.starts).toBeGreaterThan(0);
  });
});
