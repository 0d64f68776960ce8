/** The gateway's Prometheus metrics, per deployment and replica, in a registry of its own. */
import { Counter, Histogram, Registry } from 'prom-client';

export class GatewayMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({
    name: 'tern_gateway_requests_total', help: 'Requests the gateway sent to replicas, by outcome (ok, error, cancelled)',
    labelNames: ['deployment', 'replica', 'outcome'] as const, registers: [this.registry],
  });
  private readonly latency = new Histogram({
    name: 'tern_gateway_request_duration_seconds', help: 'Time from the gateway sending a request to a replica until its answer',
    labelNames: ['deployment', 'replica'] as const, registers: [this.registry],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  });
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
    this.requests.inc({ deployment, replica, outcome });
    if (seconds !== undefined) this.latency.observe({ deployment, replica }, seconds);
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
