/**
 * bench/rounds.mjs: the report's round-by-round ratios. Round i of two relays was measured side by side only while
 * every round left a sample for both; otherwise the report must not pair samples from different rounds.
 */
import { describe, expect, it } from 'vitest';
import { roundRatios, roundsText } from '../../bench/rounds.mjs';

describe('roundRatios', () => {
  it('divides round by round, in round order', () => {
    expect(roundRatios([900, 880, 1000], [1000, 1100, 1000], 3)).toEqual([0.9, 0.8, 1]);
  });

  it('gives nothing when a round left no sample on either side (the rest would be paired across rounds)', () => {
    expect(roundRatios([900, 880], [1000, 1100, 1000], 3)).toBeUndefined();
    expect(roundRatios([900, 880, 1000], [1000, 1100], 3)).toBeUndefined();
  });

  it('gives nothing for a cell that holds a note instead of samples, or no cell', () => {
    expect(roundRatios({ note: 'failed: timed out' }, [1000, 1100], 2)).toBeUndefined();
    expect(roundRatios(undefined, [1000, 1100], 2)).toBeUndefined();
  });

  it('gives nothing for a single round: the ratio itself says it all', () => {
    expect(roundRatios([900], [1000], 1)).toBeUndefined();
  });
});

describe('roundsText', () => {
  it('lists each round with two decimals, for the end of a target line', () => {
    expect(roundsText([0.934, 0.88, 1])).toBe('; rounds 0.93x, 0.88x, 1.00x');
  });

  it('is empty without round ratios', () => {
    expect(roundsText(undefined)).toBe('');
  });
});
