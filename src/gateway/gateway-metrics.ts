/**
 * The gateway's Prometheus metrics, per deployment and replica, in a registry
 * of its own. The two recorded on every forwarded request use the serving
 * core's hot series (hot-metrics.ts: prom-client hashes labels on every
 * call), cached per deployment and replica.
 */
import { Counter, Registry } from 'prom-client';
import { HotCounter, HotHistogram, type CounterSeries, type HistogramSeries } from '../serving/core/hot-metrics.js';

/** The series one (deployment, replica) pair records into. */
interface ReplicaSeries { ok: CounterSeries; error: CounterSeries; cancelled: CounterSeries; latency: HistogramSeries }

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly requests = new HotCounter(this.registry, 'tern_gateway_requests_total',
    'Requests the gateway sent to replicas, by outcome (ok, error, cancelled)', ['deployment', 'replica', 'outcome']);
  private readonly latency = new HotHistogram(this.registry, 'tern_gateway_request_duration_seconds',
    'Time from the gateway sending a request to a replica until its answer', ['deployment', 'replica'],
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]);
  private readonly byReplica = new Map<string, Map<string, ReplicaSeries>>();
  private readonly retries = new Counter({
    name: 'tern_gateway_retries_total', help: 'Requests retried on another replica after a failure',
    labelNames: ['deployment'] as const, registers: [this.registry],
  });
  private readonly hedges = new Counter({
    name: 'tern_gateway_hedges_total', help: 'Hedged copies sent to a second replica, and which copy won',
    labelNames: ['deployment', 'winner'] as const, registers: [this.registry],
  });
  private readonly ejections = new Counter({
    name: 'tern_gateway_ejections_total', help: 'Replicas taken out of rotation as outliers',
    labelNames: ['deployment', 'replica'] as const, registers: [this.registry],
  });
  private readonly failures = new Counter({
    name: 'tern_gateway_failed_requests_total', help: 'Client requests the gateway answered with an error of its own, by code',
    labelNames: ['deployment', 'code'] as const, registers: [this.registry],
  });

  attempt(deployment: string, replica: string, outcome: 'ok' | 'error' | 'cancelled', seconds?: number): void {
    const series = this.seriesOf(deployment, replica);
    series[outcome].inc();
    if (seconds !== undefined) series.latency.observe(seconds);
  }

  private seriesOf(deployment: string, replica: string): ReplicaSeries {
    let replicas = this.byReplica.get(deployment);
    if (!replicas) this.byReplica.set(deployment, (replicas = new Map()));
    let series = replicas.get(replica);
    if (!series) {
      const counter = (outcome: string) => this.requests.labels({ deployment, replica, outcome });
      series = { ok: counter('ok'), error: counter('error'), cancelled: counter('cancelled'), latency: this.latency.labels({ deployment, replica }) };
      replicas.set(replica, series);
    }
    return series;
  }

  retry(deployment: string): void {
    this.retries.inc({ deployment });
  }

  hedge(deployment: string, winner: 'first' | 'hedge'): void {
    this.hedges.inc({ deployment, winner });
  }

  ejection(deployment: string, replica: string): void {
    this.ejections.inc({ deployment, replica });
  }

  failed(deployment: string, code: string): void {
    this.failures.inc({ deployment, code });
  }
}
