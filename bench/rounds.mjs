// Ratios round by round, for the report's targets (bench/run.mjs). Repeats run round-robin, so round i of every
// relay and measurement was taken side by side; the ratio of the medians alone hides how far apart the rounds
// were, and on a shared 2-core machine one round's verdict can differ from the next.

/**
 * a[i] / b[i] for each round, or undefined unless both hold a number for every one of `rounds` (2 or more) rounds:
 * a failed round leaves no sample, after which the i-th samples of the two were no longer taken side by side.
 */
export function roundRatios(a, b, rounds) {
  if (rounds < 2 || !Array.isArray(a) || !Array.isArray(b) || a.length !== rounds || b.length !== rounds) return undefined;
  return a.map((x, i) => x / b[i]);
}

/** "; rounds 0.93x, 0.88x, 0.86x" for the report's target lines, or '' when there are no round ratios. */
export function roundsText(ratios) {
  return ratios ? `; rounds ${ratios.map((r) => `${r.toFixed(2)}x`).join(', ')}` : '';
}
