import { describe, expect, it } from 'vitest';
import { measureCpuScore } from './cpu-score.js';

describe('cpu score', () => {
  it('runs for about the configured time and reports a positive rate', () => {
    const score = measureCpuScore({ durationMs: 100 });
    expect(score.elapsed_ms).toBeGreaterThanOrEqual(100);
    expect(score.elapsed_ms).toBeLessThan(1000);
    expect(score.ops_per_second).toBeGreaterThan(1e6);
    expect(Number.isFinite(score.checksum)).toBe(true);
  });

  it('is roughly stable between runs on one machine', () => {
    const a = measureCpuScore({ durationMs: 100 }).ops_per_second;
    const b = measureCpuScore({ durationMs: 100 }).ops_per_second;
    // Loose bound: other tests share the cores.
    expect(Math.max(a, b) / Math.min(a, b)).toBeLessThan(3);
  });
});
