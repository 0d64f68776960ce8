import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { HotCounter, HotHistogram } from './hot-metrics.js';

const BUCKETS = [0.001, 0.01, 0.1, 1];
const OBSERVED = [0.0005, 0.001, 0.002, 0.05, 0.05, 0.5, 3, 0];

describe('hot metrics', () => {
  it('export exactly what prom-client exports for the same observations', async () => {
    const reference = new Registry();
    const refHistogram = new Histogram({ name: 'h', help: 'x', labelNames: ['model', 'protocol'], buckets: BUCKETS, registers: [reference] });
    const refCounter = new Counter({ name: 'c_total', help: 'y', labelNames: ['model'], registers: [reference] });
    const hot = new Registry();
    const histogram = new HotHistogram(hot, 'h', 'x', ['model', 'protocol'], BUCKETS);
    const counter = new HotCounter(hot, 'c_total', 'y', ['model']);

    const a = histogram.labels({ model: 'a', protocol: 'rest' });
    const b = histogram.labels({ model: 'b', protocol: 'grpc' });
    for (const v of OBSERVED) {
      a.observe(v);
      refHistogram.observe({ model: 'a', protocol: 'rest' }, v);
    }
    b.observe(7);
    refHistogram.observe({ model: 'b', protocol: 'grpc' }, 7);
    counter.labels({ model: 'a' }).inc();
    counter.labels({ model: 'a' }).inc(2); // the same series, looked up again
    refCounter.inc({ model: 'a' }, 3);

    expect(await hot.metrics()).toBe(await reference.metrics());
    expect(counter.labels({ model: 'a' }).value).toBe(3);
  });

  it('refuses a label set that lacks a label, and zeroes series in place on reset', async () => {
    const registry = new Registry();
    const histogram = new HotHistogram(registry, 'h', 'x', ['model'], BUCKETS);
    expect(() => histogram.labels({})).toThrow(/needs label 'model'/);
    const series = histogram.labels({ model: 'm' });
    series.observe(1);
    expect(await registry.metrics()).toContain('h_count{model="m"} 1');
    registry.resetMetrics();
    expect(await registry.metrics()).toContain('h_count{model="m"} 0');
    series.observe(0.5); // a series kept by its caller still records after the reset
    expect(await registry.metrics()).toContain('h_bucket{le="1",model="m"} 1');
  });
});
