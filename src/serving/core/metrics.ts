/**
 * Prometheus metrics of one server. Each server owns its registry (not
 * prom-client's global one) so several servers can live in one process.
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
  readonly queueLength = new Gauge({
    name: 'tern_queue_length', help: 'Requests waiting per model', labelNames: ['model'], registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'tern_process_' });
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
