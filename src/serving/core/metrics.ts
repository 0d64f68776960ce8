/**
 * Prometheus metrics of one server. Each server owns its registry (not
 * prom-client's global one) so several servers can live in one process.
 *
 * What is recorded on every request or batch uses hot-metrics.ts (series
 * resolved once per model, see there why); the rest is plain prom-client.
 * The queue length is read at scrape time instead of set per request.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { HotCounter, HotHistogram, type CounterSeries, type HistogramSeries } from './hot-metrics.js';

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

export class ServingMetrics {
  readonly registry = new Registry();
  readonly requests = new HotCounter(this.registry, 'tern_inference_requests_total', 'Inference requests by model, version and protocol', ['model', 'version', 'protocol']);
  readonly failures = new Counter({
    name: 'tern_inference_failures_total', help: 'Failed inference requests by error code',
    labelNames: ['model', 'protocol', 'code'], registers: [this.registry],
  });
  readonly requestSeconds = new HotHistogram(this.registry, 'tern_request_duration_seconds', 'End-to-end latency inside the core', ['model', 'protocol'], LATENCY_BUCKETS);
  readonly queueSeconds = new HotHistogram(this.registry, 'tern_queue_duration_seconds', 'Time a request waited for a batch', ['model'], LATENCY_BUCKETS);
  readonly computeSeconds = new HotHistogram(this.registry, 'tern_compute_duration_seconds', 'Time one batch spent in the model runtime', ['model'], LATENCY_BUCKETS);
  readonly batchSize = new HotHistogram(this.registry, 'tern_batch_size', 'Rows per executed batch', ['model'], BATCH_BUCKETS);
  readonly cacheHits = new HotCounter(this.registry, 'tern_cache_hits_total', 'Prediction cache hits', ['model']);
  readonly cacheMisses = new HotCounter(this.registry, 'tern_cache_misses_total', 'Prediction cache misses', ['model']);
  readonly modelState = new Gauge({
    name: 'tern_model_state', help: '1 for the state each model version is in',
    labelNames: ['model', 'version', 'state'], registers: [this.registry],
  });
  readonly queueLength: Gauge<'model'>;
  private readonly requestSets = new Map<string, Map<string, RequestMetrics>>();
  private readonly batchSets = new Map<string, BatchMetrics>();

  /** `queueLengths` is asked for the waiting requests per model at every scrape. */
  constructor(queueLengths: () => Iterable<[model: string, waiting: number]> = () => []) {
    this.queueLength = new Gauge({
      name: 'tern_queue_length', help: 'Requests waiting per model', labelNames: ['model'], registers: [this.registry],
      collect() {
        this.reset();
        for (const [model, waiting] of queueLengths()) this.set({ model }, waiting);
      },
    });
    collectDefaultMetrics({ register: this.registry, prefix: 'tern_process_' });
  }

  /** The request metrics of one model over one protocol, made once and then reused. */
  forRequests(model: string, protocol: string): RequestMetrics {
    let byModel = this.requestSets.get(protocol);
    if (!byModel) this.requestSets.set(protocol, (byModel = new Map()));
    let set = byModel.get(model);
    if (!set) byModel.set(model, (set = new RequestMetrics(this, model, protocol)));
    return set;
  }

  /** The batch metrics of one model, made once and then reused. */
  forBatches(model: string): BatchMetrics {
    let set = this.batchSets.get(model);
    if (!set) this.batchSets.set(model, (set = new BatchMetrics(this, model)));
    return set;
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * Series of one served model over one protocol; the version label is
 * cached per version seen. Made only for models that exist, so clients naming
 * random models cannot grow it (failures are counted on the parent).
 */
export class RequestMetrics {
  readonly latency: HistogramSeries;
  readonly queue: HistogramSeries;
  private readonly byVersion = new Map<string, CounterSeries>();

  constructor(private readonly metrics: ServingMetrics, private readonly model: string, private readonly protocol: string) {
    this.latency = metrics.requestSeconds.labels({ model, protocol });
    this.queue = metrics.queueSeconds.labels({ model });
  }

  served(version: string, seconds: number): void {
    let counter = this.byVersion.get(version);
    if (!counter) this.byVersion.set(version, (counter = this.metrics.requests.labels({ model: this.model, version, protocol: this.protocol })));
    counter.inc();
    this.latency.observe(seconds);
  }
}

/** Series of one model's batch and cache metrics. */
export class BatchMetrics {
  readonly size: HistogramSeries;
  readonly compute: HistogramSeries;
  readonly cacheHits: CounterSeries;
  readonly cacheMisses: CounterSeries;

  constructor(metrics: ServingMetrics, model: string) {
    this.size = metrics.batchSize.labels({ model });
    this.compute = metrics.computeSeconds.labels({ model });
    this.cacheHits = metrics.cacheHits.labels({ model });
    this.cacheMisses = metrics.cacheMisses.labels({ model });
  }
}
