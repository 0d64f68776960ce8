/**
 * Counters and histograms for the per-request path, exported through a
 * prom-client registry. prom-client's own `observe()`/`inc()` hash the label
 * set on every call, even on a label child; measured on a microsecond model
 * at 1 client, the two per-batch histograms alone cost 0.04 ms of a 0.3 ms
 * request (0.31 vs 0.27 ms p50 with them removed). Here a label set is
 * resolved once into a series object, and recording is a bucket search and
 * two additions. The text exposition stays prom-client's: these classes
 * implement the small interface its registry reads (name, help, type,
 * aggregator, get, reset), so /metrics is unchanged for scrapers.
 */
import type { Metric, Registry } from 'prom-client';

type Labels = Record<string, string>;
interface ExportedValue { value: number; labels: Record<string, string | number>; metricName?: string }

/** Series by label values, in label-name order (a label set is looked up once, then kept by the caller). */
abstract class HotMetric<S> {
  readonly aggregator = 'sum';
  protected readonly series = new Map<string, { labels: Labels; data: S }>();

  constructor(registry: Registry, readonly name: string, readonly help: string, protected readonly labelNames: readonly string[]) {
    // Its registry only reads the members above and get()/reset(); the cast bridges prom-client's class types.
    registry.registerMetric(this as unknown as Metric);
  }

  protected seriesFor(labels: Labels, make: () => S): S {
    for (const name of this.labelNames) {
      if (labels[name] === undefined) throw new Error(`metric ${this.name} needs label '${name}'`);
    }
    const key = this.labelNames.map((n) => labels[n]).join('\u0000');
    let entry = this.series.get(key);
    if (!entry) this.series.set(key, (entry = { labels: { ...labels }, data: make() }));
    return entry.data;
  }

  /** Zeroes every series in place: callers keep their series objects, which must go on recording. */
  reset(): void {
    for (const { data } of this.series.values()) this.zero(data);
  }

  protected abstract zero(data: S): void;
}

export interface CounterSeries { inc(by?: number): void; readonly value: number }

export class HotCounter extends HotMetric<{ value: number }> {
  readonly type = 'counter';

  /** The series of one label set; keep it and call `inc()` on it. */
  labels(labels: Labels): CounterSeries {
    const data = this.seriesFor(labels, () => ({ value: 0 }));
    return { inc: (by = 1) => { data.value += by; }, get value() { return data.value; } };
  }

  protected zero(data: { value: number }): void {
    data.value = 0;
  }

  async get() {
    const values: ExportedValue[] = [...this.series.values()].map(({ labels, data }) => ({ labels, value: data.value }));
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

export class HistogramSeries {
  /** Observations per bucket (not cumulative); the last slot is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  zero(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

export class HotHistogram extends HotMetric<HistogramSeries> {
  readonly type = 'histogram';

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[], private readonly buckets: readonly number[]) {
    super(registry, name, help, labelNames);
  }

  /** The series of one label set; keep it and call `observe()` on it. */
  labels(labels: Labels): HistogramSeries {
    return this.seriesFor(labels, () => new HistogramSeries(this.buckets));
  }

  protected zero(data: HistogramSeries): void {
    data.zero();
  }

  /** Cumulative buckets with `le`, then `_sum` and `_count`, as Prometheus expects. */
  async get() {
    const values: ExportedValue[] = [];
    for (const { labels, data } of this.series.values()) {
      let cumulative = 0;
      this.buckets.forEach((le, i) => {
        cumulative += data.counts[i];
        values.push({ labels: { le, ...labels }, value: cumulative, metricName: `${this.name}_bucket` });
      });
      values.push({ labels: { le: '+Inf', ...labels }, value: data.count, metricName: `${this.name}_bucket` });
      values.push({ labels, value: data.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: data.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
