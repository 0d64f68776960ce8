/**
 * Figures that explain a measurement: CPU used by the server and by the load
 * generator (client and server share this machine's cores), and from tern's
 * Prometheus metrics the rows per executed batch and the time spent queued.
 */
import { readFileSync } from 'node:fs';
import { request } from 'undici';

/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these ticks. */
const CLOCK_TICKS_PER_S = 100;

/** CPU seconds (user + system, all threads) of another process, or undefined where /proc is absent. */
function processCpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may contain spaces, start at "state".
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/** Busy CPU seconds of the whole machine (all cores), or undefined where /proc is absent. */
function systemBusySeconds(): number | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0];
    const ticks = line.trim().split(/\s+/).slice(1).map(Number);
    const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - ticks[3] - ticks[4]) / CLOCK_TICKS_PER_S; // minus idle and iowait
  } catch {
    return undefined;
  }
}

export interface CpuUse {
  /** Average cores busy in the server process over the interval (undefined: not measured). */
  serverCores?: number;
  /** Average cores busy in this (bench / client) process. */
  clientCores: number;
  /**
   * Average cores busy in every other process of the machine: builds, tests
   * or anything else running beside the bench, which skews its figures.
   */
  otherCores?: number;
}

/** Starts a CPU meter; the function it returns gives the averages since the start: CPU of this process, of the servers (one pid or several: their sum), and of everything else on the machine. */
export function startCpuMeter(serverPids?: number | number[]): () => CpuUse {
  const pids = serverPids === undefined ? [] : Array.isArray(serverPids) ? serverPids : [serverPids];
  const serversSeconds = (): number | undefined => {
    let total = 0;
    for (const pid of pids) {
      const s = processCpuSeconds(pid);
      if (s === undefined) return undefined;
      total += s;
    }
    return total;
  };
  const t0 = performance.now();
  const self0 = process.cpuUsage();
  const server0 = pids.length > 0 ? serversSeconds() : undefined;
  const system0 = systemBusySeconds();
  return () => {
    const wall = (performance.now() - t0) / 1000;
    const self = process.cpuUsage(self0);
    const server1 = pids.length > 0 ? serversSeconds() : undefined;
    const use: CpuUse = { clientCores: (self.user + self.system) / 1e6 / wall };
    if (server0 !== undefined && server1 !== undefined) use.serverCores = (server1 - server0) / wall;
    const system1 = systemBusySeconds();
    if (system0 !== undefined && system1 !== undefined) {
      use.otherCores = Math.max(0, (system1 - system0) / wall - use.clientCores - (use.serverCores ?? 0));
    }
    return use;
  };
}

export interface BatchCounters {
  batches: number;
  rows: number;
  queuedRequests: number;
  queueSeconds: number;
}

function metricValue(text: string, metric: string, model: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${metric}{`) && l.includes(`model="${model}"`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/** tern's batch and queue counters for one model, from GET /metrics (undefined if unavailable). */
export async function scrapeBatchCounters(baseUrl: string, model: string): Promise<BatchCounters | undefined> {
  try {
    const res = await request(`${baseUrl}/metrics`);
    const text = await res.body.text();
    if (res.statusCode !== 200) return undefined;
    return {
      batches: metricValue(text, 'tern_batch_size_count', model),
      rows: metricValue(text, 'tern_batch_size_sum', model),
      queuedRequests: metricValue(text, 'tern_queue_duration_seconds_count', model),
      queueSeconds: metricValue(text, 'tern_queue_duration_seconds_sum', model),
    };
  } catch {
    return undefined;
  }
}

export interface BatchStats {
  /** Mean rows per executed batch. */
  meanBatch: number;
  /** Mean time a request waited in tern's queue. */
  meanQueueMs: number;
}

export function batchStatsBetween(before?: BatchCounters, after?: BatchCounters): BatchStats | undefined {
  if (!before || !after) return undefined;
  const batches = after.batches - before.batches;
  const queued = after.queuedRequests - before.queuedRequests;
  if (batches <= 0 || queued <= 0) return undefined;
  return {
    meanBatch: (after.rows - before.rows) / batches,
    meanQueueMs: ((after.queueSeconds - before.queueSeconds) / queued) * 1000,
  };
}
