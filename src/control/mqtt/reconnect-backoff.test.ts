import { describe, expect, it } from 'vitest';
import { backoffDelay, DEFAULT_BACKOFF } from './reconnect-backoff.js';

describe('reconnect backoff', () => {
  it('doubles from min to max with equal jitter', () => {
    const o = DEFAULT_BACKOFF;
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, o, () => 1))).toEqual([500, 1000, 2000, 4000]);
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, o, () => 0))).toEqual([250, 500, 1000, 2000]);
    expect(backoffDelay(50, o, () => 1)).toBe(30_000);
    expect(backoffDelay(50, o, () => 0)).toBe(15_000);
  });
});
