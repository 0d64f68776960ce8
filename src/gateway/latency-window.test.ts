import { describe, expect, it } from 'vitest';
import { LatencyWindow } from './latency-window.js';

describe('LatencyWindow', () => {
  it('has no p95 until it saw enough samples, then the 95th percentile of the recent ones', () => {
    const w = new LatencyWindow(100, 50);
    for (let i = 1; i <= 49; i++) w.add(i);
    expect(w.p95()).toBeUndefined();
    w.add(50);
    expect(w.p95()).toBe(48);
    // The ring forgets old samples: after 100 samples of 1000 ms, p95 is 1000.
    for (let i = 0; i < 100; i++) w.add(1000);
    expect(w.p95()).toBe(1000);
  });
});
