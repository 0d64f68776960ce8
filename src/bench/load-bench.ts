/**
 * `tern bench load`: drives one model behind any tern endpoint (a replica, a
 * node's gateway, the control plane's gateway) with closed-loop users or
 * open-loop Poisson arrivals, one step per user count or rate, and samples
 * the serving hosts meanwhile. The clients and the load loops are the serving
 * bench's (protocol-clients.ts, load-generator.ts); this file adds input
 * sets, steps, host stats and the report.
 */
import { Pool } from 'undici';
import type { BenchProtocol, LoadReport, LoadStep } from '../protocol/bench.js';
import { buildInputSets, type InputSource } from './dataset-inputs.js';
import { runClosedLoop, runOpenLoop, type LatencySummary } from './load-generator.js';
import { loadAverage, machineInfo } from './machine-info.js';
import { fetchModelMetadata, type BenchTensor } from './model-inputs.js';
import type { BenchProgress } from './progress.js';
import { GrpcChannel, grpcClient, restBinaryClient, restJsonClient, type BenchClient } from './protocol-clients.js';
import { startHostSampler, type HostStatsSource } from './host-stats.js';

export interface LoadOptions {
  /** Base URL of the HTTP endpoint, e.g. http://10.0.0.5:8000. */
  target: string;
  /** host:port of the gRPC endpoint (default: the target's host, its port + 1). */
  grpcTarget?: string;
  model: string;
  protocol: BenchProtocol;
  /** Closed-loop user counts (one step each), unless `rates` is given. */
  users: number[];
  /** Open-loop Poisson arrival rates in requests/s (one step each). */
  rates?: number[];
  warmupMs: number;
  durationMs: number;
  inputs: InputSource;
  hostStats?: HostStatsSource;
  progress?: BenchProgress;
}

export function defaultGrpcTarget(target: string): string {
  const u = new URL(target);
  return `${u.hostname}:${Number(u.port || 80) + 1}`;
}

/** Clients for every input set; `send` takes them in turn, so the server sees the whole dataset. */
class CyclingClients {
  private next = 0;
  private readonly pool?: Pool;
  private readonly channel?: GrpcChannel;
  readonly clients: BenchClient[];

  constructor(o: LoadOptions, sets: BenchTensor[][], connections: number) {
    if (o.protocol === 'grpc') {
      this.channel = new GrpcChannel(o.grpcTarget ?? defaultGrpcTarget(o.target));
      this.clients = sets.map((s) => grpcClient(this.channel!, o.model, s));
    } else {
      this.pool = new Pool(o.target, { connections, pipelining: 1 });
      const make = o.protocol === 'rest' ? restJsonClient : restBinaryClient;
      this.clients = sets.map((s) => make(this.pool!, o.model, s));
    }
  }

  send = (): Promise<void> => {
    const c = this.clients[this.next];
    this.next = (this.next + 1) % this.clients.length;
    return c.send();
  };

  async close(): Promise<void> {
    this.channel?.close();
    await this.pool?.close();
  }
}

function toStep(r: LatencySummary, load: { users?: number; rate?: number }): Omit<LoadStep, 'hosts'> {
  return {
    mode: load.rate !== undefined ? 'open' : 'closed',
    ...(load.users !== undefined ? { users: load.users } : {}),
    ...(load.rate !== undefined ? { rate_rps: load.rate } : {}),
    requests: r.requests, errors: r.errors, errors_by_kind: r.errorsByKind,
    ...(r.firstError ? { first_error: r.firstError.slice(0, 300) } : {}),
    seconds: r.seconds, throughput_rps: r.rps, mean_ms: r.meanMs, stdev_ms: r.stdevMs,
    p50_ms: r.p50Ms, p90_ms: r.p90Ms, p99_ms: r.p99Ms, max_ms: r.maxMs,
  };
}

/** One step; host sampling covers the measured window only (it starts when the warm-up ends). */
async function runStep(o: LoadOptions, sets: BenchTensor[][], load: { users?: number; rate?: number }, label: string): Promise<LoadStep> {
  const connections = load.users ?? Math.max(8, Math.ceil((load.rate ?? 1) / 10));
  const clients = new CyclingClients(o, sets, connections);
  const step = o.progress?.step(label, o.warmupMs + o.durationMs);
  let sampler: ReturnType<typeof startHostSampler> | undefined;
  const startSampling = setTimeout(() => { if (o.hostStats) sampler = startHostSampler(o.hostStats); }, o.warmupMs);
  try {
    const common = { warmupMs: o.warmupMs, durationMs: o.durationMs, send: clients.send, onProgress: step?.tick };
    const r = load.rate !== undefined
      ? await runOpenLoop({ ...common, rate: load.rate })
      : await runClosedLoop({ ...common, concurrency: load.users!, maxDurationMs: o.durationMs * 3 });
    const hosts = (await sampler?.stop()) ?? [];
    sampler = undefined;
    return { ...toStep(r, load), hosts };
  } finally {
    clearTimeout(startSampling);
    await sampler?.stop();
    step?.finish();
    await clients.close();
  }
}

/** Sends one request per input set and checks each answer before any load, so a wrong model or shape fails fast. */
async function verify(o: LoadOptions, sets: BenchTensor[][]): Promise<string> {
  const c = new CyclingClients(o, sets.slice(0, 3), 1);
  try {
    let answer = '';
    for (const client of c.clients) answer = await client.verify();
    return answer;
  } catch (err) {
    throw new Error(`${o.model} at ${o.target} (${o.protocol}): ${(err as Error).message}`);
  } finally {
    await c.close();
  }
}

export async function prepareInputs(o: Pick<LoadOptions, 'target' | 'model' | 'inputs'>): Promise<{ sets: BenchTensor[][]; description: string }> {
  const meta = await fetchModelMetadata(o.target, o.model).catch((err: Error) => {
    throw new Error(`cannot read model '${o.model}' metadata from ${o.target}: ${err.message}`);
  });
  return buildInputSets(meta, o.inputs);
}

export async function runLoadBench(o: LoadOptions, prepared?: { sets: BenchTensor[][]; description: string }): Promise<LoadReport> {
  const machine = machineInfo();
  const started = new Date().toISOString();
  const inputs = prepared ?? await prepareInputs(o);
  await verify(o, inputs.sets);
  const loads: { users?: number; rate?: number }[] = o.rates?.length ? o.rates.map((rate) => ({ rate })) : o.users.map((users) => ({ users }));
  const steps: LoadStep[] = [];
  for (const load of loads) {
    const label = `${o.model} ${o.protocol} ${load.rate !== undefined ? `${load.rate} req/s Poisson` : `${load.users} user${load.users === 1 ? '' : 's'}`}`;
    steps.push(await runStep(o, inputs.sets, load, label));
  }
  return {
    kind: 'tern-bench-load', target: o.target, model: o.model, protocol: o.protocol, inputs: inputs.description,
    warmup_s: o.warmupMs / 1000, duration_s: o.durationMs / 1000, ...(o.hostStats ? { host_stats: o.hostStats.description } : {}),
    machine: { ...machine, load_average_at_end: loadAverage() }, started_at: started, steps,
  };
}

// ---------------------------------------------------------------- report

const f = (v: number | null | undefined, digits = 1) => (v === null || v === undefined ? '-' : v.toFixed(digits));

function errorsCell(s: LoadStep): string {
  const kinds = Object.entries(s.errors_by_kind).map(([k, n]) => `${k} ${n}`).join(', ');
  return s.errors === 0 ? '0' : `${s.errors} (${kinds})`;
}

export function renderLoadMarkdown(r: LoadReport): string {
  const rows = r.steps.map((s) => `| ${s.mode === 'open' ? `${s.rate_rps} req/s` : `${s.users} user${s.users === 1 ? '' : 's'}`} | ${f(s.throughput_rps)} | ${f(s.mean_ms, 2)} | ${f(s.stdev_ms, 2)} | ${f(s.p50_ms, 2)} | ${f(s.p90_ms, 2)} | ${f(s.p99_ms, 2)} | ${f(s.max_ms, 2)} | ${errorsCell(s)} | ${s.hosts.map((h) => `${h.host} ${f(h.cpu_percent_mean, 0)}% / ${f(h.memory_mb_max, 0)} MB`).join('; ') || '-'} |`);
  return [
    `# tern bench load: ${r.model}`,
    '',
    `target ${r.target}, protocol ${r.protocol}, inputs: ${r.inputs}; warm-up ${r.warmup_s} s excluded, ${r.duration_s} s measured per step; started ${r.started_at}.`,
    r.host_stats ? `Host CPU (mean, % of one core) and memory (max) from ${r.host_stats}.` : 'Host CPU and memory were not sampled (no lab or control plane given).',
    '',
    '| load | throughput req/s | mean ms | stdev ms | p50 ms | p90 ms | p99 ms | max ms | errors | hosts CPU / memory |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---|---|',
    ...rows,
    '',
    `Machine: ${String(r.machine.cpu_model)} x ${String(r.machine.cpu_count)}, Node ${String(r.machine.node)}; load average ${JSON.stringify(r.machine.load_average_at_start)} at start, ${JSON.stringify(r.machine.load_average_at_end)} at end.`,
    '',
  ].join('\n');
}
