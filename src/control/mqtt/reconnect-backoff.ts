/**
 * Exponential reconnect backoff with jitter for an mqtt.js client.
 *
 * mqtt.js reconnects on its own at a fixed `reconnectPeriod`, re-reading that
 * option after every closed connection. This sets it before mqtt.js does (a
 * prepended 'close' listener), so the wait grows min, 2 min, 4 min ... up to max,
 * with jitter so a thousand agents that lost the broker at once do not come back
 * in one wave. mqtt.js keeps its own queues and in-flight QoS 1 messages across
 * these reconnects (its public `reconnect()` would replace them).
 *
 * The backoff starts again from min once a connection has lasted `stableMs`: a
 * client that connects and is dropped at once (refused ACL, session taken over)
 * keeps backing off instead of hammering the broker.
 */
import type { MqttClient } from 'mqtt';

export interface BackoffOptions {
  /** First wait after a lost connection (ms). */
  minMs?: number;
  /** Longest wait between attempts (ms). */
  maxMs?: number;
  /** A connection that lasted this long resets the backoff (ms). */
  stableMs?: number;
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = { minMs: 500, maxMs: 30_000, stableMs: 10_000 };

/** The wait before attempt `attempt` (0-based): equal jitter over min * 2^attempt, capped. */
export function backoffDelay(attempt: number, options: Required<BackoffOptions>, random: () => number = Math.random): number {
  const base = Math.min(options.maxMs, options.minMs * 2 ** Math.min(attempt, 30));
  return Math.round(base / 2 + (random() * base) / 2);
}

/** Makes `client` (created with any reconnectPeriod > 0) reconnect with exponential backoff. */
export function applyReconnectBackoff(client: MqttClient, options: BackoffOptions = {}): void {
  const o = { ...DEFAULT_BACKOFF, ...options };
  let attempt = 0;
  let connectedAt = 0;
  client.options.reconnectPeriod = backoffDelay(0, o);
  client.on('connect', () => { connectedAt = Date.now(); });
  client.prependListener('close', () => {
    if (connectedAt > 0 && Date.now() - connectedAt >= o.stableMs) attempt = 0;
    connectedAt = 0;
    client.options.reconnectPeriod = backoffDelay(attempt, o);
    attempt += 1;
  });
}
