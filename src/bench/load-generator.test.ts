import { describe, expect, it } from 'vitest';
import { createPrng } from '../models/prng.js';
import { errorKind, runOpenLoop } from './load-generator.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe('open-loop load', () => {
  it('sends Poisson arrivals at the asked rate and times each from its planned arrival', async () => {
    const r = await runOpenLoop({ rate: 200, warmupMs: 200, durationMs: 1000, send: () => sleep(3), random: createPrng(7) });
    // 200 expected; a Poisson count's standard deviation is ~14.
    expect(r.requests).toBeGreaterThan(140);
    expect(r.requests).toBeLessThan(260);
    expect(r.errors).toBe(0);
    expect(r.p50Ms).toBeGreaterThan(2.5); // timers may fire a fraction of a millisecond early
    expect(r.rps).toBeCloseTo(r.requests, 5);
  });

  it('counts arrivals beyond the in-flight cap as overload errors instead of waiting', async () => {
    const r = await runOpenLoop({ rate: 200, warmupMs: 0, durationMs: 500, send: () => sleep(100), maxInFlight: 2, random: createPrng(3) });
    expect(r.errorsByKind.overload).toBeGreaterThan(50);
    expect(r.requests).toBeLessThan(15);
  });

  it('names error kinds', () => {
    expect(errorKind(new Error('HTTP 503: queue full'))).toBe('http-5xx');
    expect(errorKind(new Error('HTTP 404: unknown model'))).toBe('http-4xx');
    expect(errorKind(new Error('gRPC UNAVAILABLE: no replica'))).toBe('grpc-UNAVAILABLE');
    expect(errorKind(new Error('gRPC DEADLINE_EXCEEDED: late'))).toBe('timeout');
    expect(errorKind(new Error('connect ECONNREFUSED 10.0.0.1:8000'))).toBe('connection');
  });
});
