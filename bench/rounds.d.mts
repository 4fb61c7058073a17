// Types for bench/rounds.mjs (the benchmark is plain JavaScript; test/unit/bench-rounds.test.ts imports it).

export function roundRatios(a: unknown, b: unknown, rounds: number): number[] | undefined;
export function roundsText(ratios: number[] | undefined): string;
