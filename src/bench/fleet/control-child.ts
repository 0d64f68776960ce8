/**
 * The control plane under test, alone in a child process of the fleet bench so
 * that its CPU time and RSS can be read from /proc without the simulated agents
 * in them. It is `startControlPlane` exactly as `tern control` runs it (SQLite,
 * embedded MQTT broker, fleet hub, reconciler, REST API, default log level
 * writing to stdout, which the bench sends to a file), on free loopback ports.
 *
 * Over the IPC channel it announces `{ type: 'ready', url, mqttUrl }` and answers
 * `{ type: 'stats', id }` with what only the process itself can see: the fleet
 * hub's message counters and the event loop's delay since the previous request.
 *
 *   options (environment): TERN_BENCH_DATA_DIR, TERN_BENCH_ADMIN_PASSWORD,
 *   TERN_BENCH_HEARTBEAT_MS, TERN_BENCH_HEARTBEAT_TIMEOUT_MS (absent: the default)
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { startControlPlane, type ControlPlane } from '../../control/control-plane.js';

export interface ChildStats {
  type: 'stats';
  id: number;
  hubReceived: number;
  hubDropped: number;
  hubConnected: boolean;
  /** Event loop delay since the previous stats request, in ms. */
  loopDelayP50Ms: number;
  loopDelayP99Ms: number;
  loopDelayMaxMs: number;
  heapUsedMb: number;
}

export type ChildMessage = { type: 'ready'; url: string; mqttUrl: string } | ChildStats | { type: 'error'; message: string };

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

function send(message: ChildMessage): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const dataDir = env('TERN_BENCH_DATA_DIR');
  const adminPassword = env('TERN_BENCH_ADMIN_PASSWORD');
  if (!dataDir || !adminPassword || !process.send) {
    throw new Error('control-child.js is started by the fleet bench (IPC channel, TERN_BENCH_DATA_DIR and TERN_BENCH_ADMIN_PASSWORD)');
  }
  const timeout = env('TERN_BENCH_HEARTBEAT_TIMEOUT_MS');
  const cp: ControlPlane = await startControlPlane({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    mqttPort: 0,
    advertiseHost: '127.0.0.1',
    adminPassword,
    heartbeatMs: Number(env('TERN_BENCH_HEARTBEAT_MS') ?? 1000),
    ...(timeout ? { heartbeatTimeoutMs: Number(timeout) } : {}),
  });

  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  process.on('message', (m: { type?: string; id?: number }) => {
    if (m?.type !== 'stats') return;
    const hub = cp.hub.stats();
    send({
      type: 'stats', id: m.id ?? 0, hubReceived: hub.received, hubDropped: hub.dropped, hubConnected: hub.connected,
      loopDelayP50Ms: delay.percentile(50) / 1e6, loopDelayP99Ms: delay.percentile(99) / 1e6, loopDelayMaxMs: delay.max / 1e6,
      heapUsedMb: process.memoryUsage().heapUsed / 2 ** 20,
    });
    delay.reset();
  });

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void cp.close().catch(() => undefined).finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  // The bench went away without stopping us: do not outlive it.
  process.once('disconnect', stop);
  send({ type: 'ready', url: cp.url, mqttUrl: cp.mqttUrl });
}

main().catch((err: unknown) => {
  const message = err instanceof Error ? err.stack ?? err.message : String(err);
  process.stderr.write(`${message}\n`);
  send({ type: 'error', message });
  process.exit(1);
});
