/** Plumbing for the MQTT tests: a test auth, raw mqtt.js clients, fleet messages, event waits. */
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import type { Principal } from '../src/control/mqtt/embedded-broker.js';
import type { DesiredState, Heartbeat } from '../src/protocol/fleet.js';

export const log = pino({ level: process.env.TERN_TEST_LOG ?? 'silent' });

export const CONTROL_USER = 'tern-control';
export const CONTROL_PASSWORD = 'control-secret';
export const nodeToken = (node: string): string => `token-of-${node}`;

/** Control user plus any node whose password is `nodeToken(node)`. */
export const testAuth = {
  authenticate(username: string, password: Buffer | undefined): Principal | undefined {
    const pw = password?.toString();
    if (username === CONTROL_USER) return pw === CONTROL_PASSWORD ? { kind: 'control' } : undefined;
    return pw === nodeToken(username) ? { kind: 'node', node: username } : undefined;
  },
};

/** A raw mqtt.js client (no reconnect); resolves on CONNACK, rejects with the refusal. */
export function rawClient(url: string, options: IClientOptions): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = connect(url, { reconnectPeriod: 0, protocolVersion: 4, connectTimeout: 5000, ...options });
    client.once('connect', () => { client.removeAllListeners('error'); client.on('error', () => undefined); resolve(client); });
    client.once('error', (err) => { client.end(true); reject(err); });
  });
}

export function heartbeat(seq: number, extra: Partial<Heartbeat> = {}): Heartbeat {
  return {
    seq, ts: Date.now(), cpu_percent: 12.5, memory_used_bytes: 1.2e9, memory_total_bytes: 4e9, load1: 0.4,
    temperature_c: 48, agent_rss_bytes: 4.1e7, applied_revision: 0,
    replicas: [
      { id: 'iris-1', generation: 2, state: 'ready', cpu_percent: 3.5, rss_bytes: 9.5e7 },
      { id: 'ocr-1', generation: 1, state: 'starting' },
    ],
    ...extra,
  };
}

export function desired(node: string, revision: number, replicaIds: string[] = ['r-1']): DesiredState {
  return {
    node, revision,
    replicas: replicaIds.map((id) => ({
      id, deployment: 'iris', model: 'iris', version: '1', sha256: 'a'.repeat(64), format: 'onnx' as const,
      runtime: 'process' as const, resources: { cpu: 0.5, memory_mb: 256 }, generation: 1,
    })),
  };
}

/** Resolves with the args of the next `event` that passes `filter`; rejects after timeoutMs. */
export function nextEvent<A extends unknown[]>(
  emitter: { on(e: string, l: (...a: A) => void): unknown; off(e: string, l: (...a: A) => void): unknown },
  event: string, filter: (...args: A) => boolean = () => true, timeoutMs = 10_000,
): Promise<A> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { emitter.off(event, listener); reject(new Error(`no ${event} event within ${timeoutMs} ms`)); }, timeoutMs);
    function listener(...args: A): void {
      if (!filter(...args)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(args);
    }
    emitter.on(event, listener);
  });
}

export async function until(check: () => boolean, timeoutMs = 10_000, everyMs = 20): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (check()) return true;
    await sleep(everyMs);
  }
  return check();
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export { freePort } from './helpers.js';
