/**
 * Prometheus metrics of one server. Each server owns its registry (not
 * prom-client's global one) so several servers can live in one process.
 *
 * The per-request path records through label children made once per model
 * (`RequestMetrics`, `BatchMetrics`) rather than label objects built on every
 * request. prom-client 15 still hashes a child's labels inside each
 * observation (~0.5 µs hot); a hand-kept histogram would avoid that too.
 * The queue length is read at scrape time instead of set per request.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256];

export class ServingMetrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'tern_inference_requests_total', help: 'Inference requests by model, version and protocol',
    labelNames: ['model', 'version', 'protocol'], registers: [this.registry],
  });
  readonly failures = new Counter({
    name: 'tern_inference_failures_total', help: 'Failed inference requests by error code',
    labelNames: ['model', 'protocol', 'code'], registers: [this.registry],
  });
  readonly requestSeconds = new Histogram({
    name: 'tern_request_duration_seconds', help: 'End-to-end latency inside the core',
    labelNames: ['model', 'protocol'], buckets: LATENCY_BUCKETS, registers: [this.registry],
  });
  readonly queueSeconds = new Histogram({
    name: 'tern_queue_duration_seconds', help: 'Time a request waited for a batch',
    labelNames: ['model'], buckets: LATENCY_BUCKETS, registers: [this.registry],
  });
  readonly computeSeconds = new Histogram({
    name: 'tern_compute_duration_seconds', help: 'Time one batch spent in the model runtime',
    labelNames: ['model'], buckets: LATENCY_BUCKETS, registers: [this.registry],
  });
  readonly batchSize = new Histogram({
    name: 'tern_batch_size', help: 'Rows per executed batch',
    labelNames: ['model'], buckets: BATCH_BUCKETS, registers: [this.registry],
  });
  readonly cacheHits = new Counter({
    name: 'tern_cache_hits_total', help: 'Prediction cache hits', labelNames: ['model'], registers: [this.registry],
  });
  readonly cacheMisses = new Counter({
    name: 'tern_cache_misses_total', help: 'Prediction cache misses', labelNames: ['model'], registers: [this.registry],
  });
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
 * Label children of one served model over one protocol; the version label is
 * cached per version seen. Made only for models that exist, so clients naming
 * random models cannot grow it (failures are counted on the parent).
 */
export class RequestMetrics {
  readonly latency: Histogram.Internal<string>;
  readonly queue: Histogram.Internal<string>;
  private readonly byVersion = new Map<string, Counter.Internal>();

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

/** Label children of one model's batch and cache metrics. */
export class BatchMetrics {
  readonly size: Histogram.Internal<string>;
  readonly compute: Histogram.Internal<string>;
  readonly cacheHits: Counter.Internal;
  readonly cacheMisses: Counter.Internal;

  constructor(metrics: ServingMetrics, model: string) {
    this.size = metrics.batchSize.labels({ model });
    this.compute = metrics.computeSeconds.labels({ model });
    this.cacheHits = metrics.cacheHits.labels({ model });
    this.cacheMisses = metrics.cacheMisses.labels({ model });
  }
}
