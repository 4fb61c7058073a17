// Summarise a V8 CPU profile (node --cpu-prof, or BENCH_PROFILE=dir npm run bench): the top frames by self time.
//   [INCLUSIVE=1] node bench/profile-top.mjs FILE.cpuprofile [N=25]   (INCLUSIVE=1 adds time including callees)
import { readFileSync } from 'node:fs';

const profile = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const top = Number(process.argv[3] ?? 25);
const nodes = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const keyOf = ({ callFrame: f }) => `${f.functionName || '(anonymous)'}${f.url ? ` ${f.url.split('/').slice(-2).join('/')}:${f.lineNumber + 1}` : ''}`;
const self = new Map();
/** Inclusive time: each sample counts once for every distinct function on its stack. */
const inclusive = new Map();
let total = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0;
  total += dt;
  const key = keyOf(nodes.get(profile.samples[i]));
  self.set(key, (self.get(key) ?? 0) + dt);
  const seen = new Set();
  for (let id = profile.samples[i]; id !== undefined; id = parent.get(id)) seen.add(keyOf(nodes.get(id)));
  for (const k of seen) inclusive.set(k, (inclusive.get(k) ?? 0) + dt);
}
const idle = self.get('(idle)') ?? 0;
console.log(`${(total / 1000).toFixed(0)} ms sampled, ${(((total - idle) / total) * 100).toFixed(0)}% busy`);
console.log('self time:');
for (const [key, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${key}`);
}
if (process.env.INCLUSIVE) {
  console.log('inclusive time:');
  for (const [key, us] of [...inclusive].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    if (key.startsWith('(root)') || key.startsWith('(idle)')) continue;
    console.log(`${((100 * us) / total).toFixed(1).padStart(5)}%  ${key}`);
  }
}
