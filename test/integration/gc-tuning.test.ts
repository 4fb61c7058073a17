/**
 * server/gc-tuning.ts in a real Node process: the CLI turns V8's incremental marking off (it set off runs of
 * mark-compacts under sustained transfers, docs/BENCHMARKS.md), and SOCKGATE_INCREMENTAL_GC=1 keeps it.
 * A child process allocates enough for V8 to start incremental marking when it may, and traces it.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { cliPath, ensureBuilt, root } from '../helpers/cli.js';

const tuning = pathToFileURL(join(root, 'dist', 'server', 'gc-tuning.js')).href;
// 3,000 arrays of 20,000 numbers, up to 300 alive at once: old-generation growth V8 marks incrementally.
const script = `
  const { tuneGcForThroughput } = await import(${JSON.stringify(tuning)});
  console.log('changed', tuneGcForThroughput());
  let keep = [];
  for (let i = 0; i < 3000; i++) { keep.push(new Array(20000).fill(i)); if (keep.length > 300) keep = []; }
`;

/** Incremental markings V8 started, from --trace-incremental-marking output. */
function countStarts(out: string): number {
  return out.split('\n').filter((l) => l.includes('[IncrementalMarking] Start (')).length;
}

function markingStarts(env: Record<string, string>): { starts: number; changed: boolean } {
  const out = execFileSync(process.execPath, ['--trace-incremental-marking', '--input-type=module', '-e', script], {
    env: { ...process.env, ...env },
    timeout: 60_000,
    maxBuffer: 64 * 1024 * 1024,
  }).toString();
  return { starts: countStarts(out), changed: out.includes('changed true') };
}

describe('GC tuning for the CLI', () => {
  beforeAll(() => ensureBuilt(), 180_000);

  it('turns incremental marking off by default', () => {
    expect(markingStarts({ SOCKGATE_INCREMENTAL_GC: '' })).toEqual({ starts: 0, changed: true });
  });

  it('the CLI flips the flag before V8 has started marking the heap (flipping it during marking aborts the process)', () => {
    // When the CLI flipped it after loading Fastify, loading had always started one incremental marking, and about
    // 7% of runs of this very command died in V8's concurrent marking (fatal error or SIGSEGV). A config error is
    // the shortest path that loads everything.
    const dir = mkdtempSync(join(tmpdir(), 'sockgate-gc-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'routes:\n  ssh:\n    target: ftp://example\n');
    try {
      const r = spawnSync(process.execPath, ['--trace-incremental-marking', cliPath, 'serve', '--config', bad], {
        env: { ...process.env, SOCKGATE_INCREMENTAL_GC: '' },
        timeout: 60_000,
        encoding: 'utf8',
      });
      expect(r.status).toBe(1);
      expect(r.stderr).toContain('invalid configuration');
      expect(countStarts(r.stdout)).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps V8 default with SOCKGATE_INCREMENTAL_GC=1 (the same allocations then start incremental marking)', () => {
    const r = markingStarts({ SOCKGATE_INCREMENTAL_GC: '1' });
    expect(r.changed).toBe(false);
    expect(r.starts).toBeGreaterThan(0);
  });
});
