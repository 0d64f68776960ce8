/**
 * What the serving bench found: per-model figures, the ratios between tern,
 * raw ONNX Runtime and the naive server, the pass/fail of the serving targets,
 * and their rendering as tables (console and bench/results/serving.md) and as
 * bench/results/serving.json.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { machineInfo as sharedMachineInfo } from './machine-info.js';
import path from 'node:path';
import type { LatencySummary } from './load-generator.js';
import type { Transport } from './protocol-clients.js';
import type { ServingConfig } from './raw-onnx.js';
import type { BatchStats, CpuUse } from './server-stats.js';
import { atMedian } from './median.js';

export const RAW_BATCHES = [1, 2, 4, 8, 16, 32] as const;
export const CLIENT_COUNTS = [1, 32] as const;

export const SYSTEM_ORDER = ['raw', 'tern', 'naive', 'floor'] as const;
export type System = (typeof SYSTEM_ORDER)[number];

export interface Measurement {
  system: System;
  transport: 'in-process' | Transport;
  /** raw: rows per session.run; servers: concurrent closed-loop clients. */
  load: { batch: number } | { clients: number };
  /** Rows each request or run carries. */
  rowsPerRequest: number;
  result?: LatencySummary;
  /** Why there is no result (failed verification, server error...). */
  error?: string;
  cpu?: CpuUse;
  batchStats?: BatchStats;
  /** What the server answered to the verification request. */
  answer?: string;
  /** With several rounds: the throughput of every round, lowest first (this measurement is the median one). */
  rounds?: number[];
}

export interface ModelRun {
  model: string;
  inputs?: { name: string; datatype: string; shape: number[] }[];
  serving?: ServingConfig;
  measurements: Measurement[];
  /** Set when the model could not be measured at all. */
  error?: string;
}

export interface BenchSettings {
  durationS: number;
  warmupS: number;
  repository: string;
}

type Num = number | null;

/** The figures of one model, flat, as written to serving.json. */
export interface ModelSummary {
  model: string;
  error?: string;
  intra_op_threads: Num;
  raw_rps_b1: Num;
  raw_p50_ms_b1: Num;
  raw_p99_ms_b1: Num;
  raw_rps_best: Num;
  raw_best_batch: Num;
  tern_rps_c32_best: Num;
  tern_best_transport_c32: string | null;
  ratios: {
    tern_c32_best_over_raw_best: Num;
    tern_c32_best_over_naive_c32: Num;
    tern_p50_c1_grpc_minus_raw_p50_b1_ms: Num;
    tern_p50_c1_rest_binary_minus_raw_p50_b1_ms: Num;
    /** The most any server can reach over the naive one here: a server doing no work. */
    floor_c32_over_naive_c32: Num;
    /** tern's own share of a 1-client request: its p50 minus the model's (raw batch 1) minus an exchange of the same bytes with a server doing no work. */
    tern_own_p50_c1_rest_binary_ms: Num;
  };
  [field: string]: unknown;
}

function find(run: ModelRun, system: System, transport: string, key: 'batch' | 'clients', n: number): LatencySummary | undefined {
  return run.measurements.find((m) => m.system === system && m.transport === transport
    && (m.load as Record<string, number>)[key] === n)?.result;
}

/** Rows per second: requests (or runs) per second times rows each carries. */
function rowsPerSecond(m: Measurement): number | undefined {
  return m.result ? m.result.rps * m.rowsPerRequest : undefined;
}

const snake = (t: string) => t.replace(/-/g, '_');
const orNull = (v: number | undefined): Num => (v === undefined || !Number.isFinite(v) ? null : v);
const ratio = (a: Num, b: Num): Num => (a === null || b === null || b === 0 ? null : a / b);
const diff = (a: Num, b: Num): Num => (a === null || b === null ? null : a - b);

export function summarizeModel(run: ModelRun): ModelSummary {
  const flat: Record<string, Num> = {};
  const rawB1 = find(run, 'raw', 'in-process', 'batch', 1);
  let best: { rows: number; batch: number } | undefined;
  for (const b of RAW_BATCHES) {
    const m = run.measurements.find((x) => x.system === 'raw' && 'batch' in x.load && x.load.batch === b);
    const rows = m ? rowsPerSecond(m) : undefined;
    flat[`raw_rows_per_s_b${b}`] = orNull(rows);
    flat[`raw_p50_ms_b${b}`] = orNull(m?.result?.p50Ms);
    if (rows !== undefined && (!best || rows > best.rows)) best = { rows, batch: b };
  }
  let ternBest: { rps: number; transport: string } | undefined;
  for (const transport of ['rest-json', 'rest-binary', 'grpc'] as const) {
    for (const c of CLIENT_COUNTS) {
      const r = find(run, 'tern', transport, 'clients', c);
      flat[`tern_rps_c${c}_${snake(transport)}`] = orNull(r?.rps);
      flat[`tern_p50_ms_c${c}_${snake(transport)}`] = orNull(r?.p50Ms);
      flat[`tern_p99_ms_c${c}_${snake(transport)}`] = orNull(r?.p99Ms);
      if (c === 32 && r && (!ternBest || r.rps > ternBest.rps)) ternBest = { rps: r.rps, transport };
    }
  }
  for (const [system, transport] of [['naive', 'rest-json'], ['floor', 'rest-binary']] as const) {
    for (const c of CLIENT_COUNTS) {
      const r = find(run, system, transport, 'clients', c);
      flat[`${system}_rps_c${c}`] = orNull(r?.rps);
      flat[`${system}_p50_ms_c${c}`] = orNull(r?.p50Ms);
      flat[`${system}_p99_ms_c${c}`] = orNull(r?.p99Ms);
    }
  }
  const rawP50 = orNull(rawB1?.p50Ms);
  const ternC32Best = orNull(ternBest?.rps);
  const rawBest = orNull(best?.rows);
  return {
    model: run.model,
    ...(run.error ? { error: run.error } : {}),
    intra_op_threads: orNull(run.serving?.intraOpThreads),
    raw_rps_b1: orNull(rawB1?.rps),
    raw_p50_ms_b1: rawP50,
    raw_p99_ms_b1: orNull(rawB1?.p99Ms),
    raw_rps_best: rawBest,
    raw_best_batch: orNull(best?.batch),
    tern_rps_c32_best: ternC32Best,
    tern_best_transport_c32: ternBest?.transport ?? null,
    ...flat,
    ratios: {
      tern_c32_best_over_raw_best: ratio(ternC32Best, rawBest),
      tern_c32_best_over_naive_c32: ratio(ternC32Best, flat.naive_rps_c32),
      tern_p50_c1_grpc_minus_raw_p50_b1_ms: diff(flat.tern_p50_ms_c1_grpc, rawP50),
      tern_p50_c1_rest_binary_minus_raw_p50_b1_ms: diff(flat.tern_p50_ms_c1_rest_binary, rawP50),
      floor_c32_over_naive_c32: ratio(flat.floor_rps_c32, flat.naive_rps_c32),
      tern_own_p50_c1_rest_binary_ms: diff(diff(flat.tern_p50_ms_c1_rest_binary, rawP50), flat.floor_p50_ms_c1),
    },
  };
}

export interface TargetResult {
  target: string;
  /** null: not evaluated (the model was not part of this run). */
  pass: boolean | null;
  detail: string;
  /** What this machine allows: the floor's figure the target is bounded by. */
  bound?: string;
}

const f1 = (v: Num) => (v === null ? 'n/a' : v.toFixed(1));
/** Ratios span 0.001 to 100: two significant digits below 1, two decimals above. */
const fRatio = (v: Num) => (v === null ? 'n/a' : v >= 1 ? v.toFixed(2) : v.toPrecision(2));

/** A missing figure of a model that was measured is a failure (something broke); an absent model is n/a. */
function verdict(ok: boolean | null, present: boolean): boolean | null {
  if (!present) return null;
  return ok ?? false;
}

export function evaluateTargets(summaries: ModelSummary[]): TargetResult[] {
  const byName = new Map(summaries.map((s) => [s.model, s]));
  const out: TargetResult[] = [];

  const medium = byName.get('synthetic-medium');
  const mr = medium?.ratios.tern_c32_best_over_raw_best ?? null;
  out.push({
    target: 'synthetic-medium: tern 32 clients (best transport) >= 0.85 x raw ONNX Runtime best batch',
    pass: verdict(mr === null ? null : mr >= 0.85, medium !== undefined),
    detail: medium ? `ratio ${fRatio(mr)} (tern ${f1(medium.tern_rps_c32_best)} rps via ${medium.tern_best_transport_c32}, raw ${f1(medium.raw_rps_best)} rows/s at batch ${medium.raw_best_batch})` : 'synthetic-medium not measured',
  });

  const small = byName.get('synthetic-small');
  const sr = small?.ratios.tern_c32_best_over_naive_c32 ?? null;
  out.push({
    target: 'synthetic-small: tern 32 clients (best transport) >= 2 x naive server 32 clients',
    pass: verdict(sr === null ? null : sr >= 2, small !== undefined),
    detail: small ? `ratio ${fRatio(sr)} (tern ${f1(small.tern_rps_c32_best)} rps, naive ${f1(small.naive_rps_c32 as Num)} rps)` : 'synthetic-small not measured',
    ...(small ? { bound: `the floor (no work) reaches ${fRatio(small.ratios.floor_c32_over_naive_c32)} x naive here` } : {}),
  });

  const below: string[] = [];
  let complete = summaries.length > 0;
  for (const s of summaries) {
    for (const c of CLIENT_COUNTS) {
      const tern = Math.max(...(['grpc', 'rest_binary', 'rest_json'] as const).map((t) => (s[`tern_rps_c${c}_${t}`] as Num) ?? -Infinity));
      const naive = s[`naive_rps_c${c}`] as Num;
      if (!Number.isFinite(tern) || naive === null) { complete = false; continue; }
      if (tern < naive) below.push(`${s.model} at ${c} client(s): tern ${tern.toFixed(1)} < naive ${naive.toFixed(1)} rps`);
    }
  }
  out.push({
    target: 'tern (best transport) never below the naive server, any model, 1 and 32 clients',
    pass: summaries.length === 0 ? null : below.length === 0 && complete,
    detail: below.length > 0 ? below.join('; ') : complete ? 'tern >= naive everywhere' : 'some figures are missing',
  });

  const slow: string[] = [];
  let latencyComplete = summaries.length > 0;
  for (const s of summaries) {
    for (const [name, d] of [['gRPC', s.ratios.tern_p50_c1_grpc_minus_raw_p50_b1_ms], ['REST binary', s.ratios.tern_p50_c1_rest_binary_minus_raw_p50_b1_ms]] as const) {
      if (d === null) { latencyComplete = false; continue; }
      if (d > 0.5) slow.push(`${s.model} ${name} +${d.toFixed(3)} ms`);
    }
  }
  // The floor's own 1-client p50 is the least any server adds to raw inference over REST here.
  const floors = summaries.map((s) => `${s.model} ${fmtNumMs(s.floor_p50_ms_c1 as Num)}`);
  out.push({
    target: 'tern 1-client p50 within 0.5 ms of raw batch-1 p50 (gRPC and REST binary), every model',
    pass: summaries.length === 0 ? null : slow.length === 0 && latencyComplete,
    detail: slow.length > 0 ? `over by: ${slow.join('; ')}` : latencyComplete ? 'all within 0.5 ms' : 'some figures are missing',
    ...(summaries.length > 0 ? { bound: `the floor's own 1-client REST binary p50 (an exchange of the same bytes, no work): ${floors.join('; ')}` } : {}),
  });
  return out;
}

// ---------------------------------------------------------------- rendering

function fmtRate(v: number | undefined): string {
  if (v === undefined) return '-';
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}

function fmtMs(v: number | undefined): string {
  if (v === undefined) return '-';
  return v < 10 ? v.toFixed(3) : v < 100 ? v.toFixed(2) : v.toFixed(1);
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, k) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (cells: string[]) => `| ${cells.map((c, k) => (k < 3 ? c.padEnd(widths[k]) : c.padStart(widths[k]))).join(' | ')} |`;
  const rule = `|${widths.map((w, k) => (k < 3 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [line(header), rule, ...rows.map(line)].join('\n');
}

const LABEL: Record<System, string> = { raw: 'raw ORT', tern: 'tern', naive: 'naive', floor: 'floor' };

function measurementRow(m: Measurement): string[] {
  const load = 'batch' in m.load ? `batch ${m.load.batch}` : `${m.load.clients} client${m.load.clients === 1 ? '' : 's'}`;
  const r = m.result;
  const errors = m.error ? `FAILED: ${m.error.split('\n')[0].slice(0, 120)}` : r && r.errors > 0 ? `${r.errors}: ${(r.firstError ?? '').slice(0, 100)}` : '0';
  return [
    LABEL[m.system], m.transport, load,
    fmtRate(rowsPerSecond(m)), fmtMs(r?.p50Ms), fmtMs(r?.p99Ms),
    m.batchStats ? m.batchStats.meanBatch.toFixed(1) : '-',
    m.batchStats ? fmtMs(m.batchStats.meanQueueMs) : '-',
    m.cpu?.serverCores !== undefined ? m.cpu.serverCores.toFixed(2) : '-',
    m.cpu ? m.cpu.clientCores.toFixed(2) : '-',
    m.cpu?.otherCores !== undefined ? m.cpu.otherCores.toFixed(2) : '-',
    errors,
  ];
}

const HEADER = ['system', 'transport', 'load', 'rows/s', 'p50 ms', 'p99 ms', 'batch', 'queue ms', 'srv cpu', 'bench cpu', 'other cpu', 'errors'];

/** Other processes busier than this (in cores) during a measurement make its figures suspect. */
export const NOISY_OTHER_CORES = 0.25;

/** Measurements during which other processes used the CPU noticeably. */
export function noisyMeasurements(runs: ModelRun[]): string[] {
  return runs.flatMap((r) => r.measurements
    .filter((m) => (m.cpu?.otherCores ?? 0) > NOISY_OTHER_CORES)
    .map((m) => `${r.model} ${m.system} ${m.transport} ${'batch' in m.load ? `batch ${m.load.batch}` : `${m.load.clients}c`} (${m.cpu!.otherCores!.toFixed(2)})`));
}

export function renderModel(run: ModelRun, s: ModelSummary): string {
  const lines: string[] = [`### ${run.model}`, ''];
  if (run.inputs) lines.push(`input ${run.inputs.map((i) => `${i.name} ${i.datatype} [${i.shape.join(',')}]`).join(', ')} per request`);
  if (run.serving) {
    const c = run.serving;
    lines.push(`tern config: threads ${c.threads} x instances ${c.instances}, execution ${c.execution}, max_batch_size ${c.maxBatchSize}, batching ${c.batching}; raw ORT and naive server use intraOpNumThreads = threads x instances = ${c.intraOpThreads}`);
  }
  if (run.error) lines.push(`NOT MEASURED: ${run.error}`);
  lines.push('');
  if (run.measurements.length > 0) lines.push(table(HEADER, run.measurements.map(measurementRow)), '');
  const r = s.ratios;
  lines.push(
    `- tern c32 best (${s.tern_best_transport_c32 ?? 'n/a'}) / raw best (batch ${s.raw_best_batch ?? 'n/a'}): **${fRatio(r.tern_c32_best_over_raw_best)}**`,
    `- tern c32 best / naive c32: **${fRatio(r.tern_c32_best_over_naive_c32)}**`,
    `- tern p50 1 client - raw p50 batch 1: gRPC **${signedMs(r.tern_p50_c1_grpc_minus_raw_p50_b1_ms)}**, REST binary **${signedMs(r.tern_p50_c1_rest_binary_minus_raw_p50_b1_ms)}**`,
    `- floor (no work, same bytes): 1-client p50 **${fmtNumMs(s.floor_p50_ms_c1 as Num)}**; c32 / naive c32 **${fRatio(r.floor_c32_over_naive_c32)}**; tern's own share of its REST binary 1-client p50 (minus raw batch 1, minus floor) **${signedMs(r.tern_own_p50_c1_rest_binary_ms)}**`,
    '',
  );
  return lines.join('\n');
}

function fmtNumMs(v: Num): string {
  return v === null ? 'n/a' : `${fmtMs(v)} ms`;
}

function signedMs(v: Num): string {
  return v === null ? 'n/a' : `${v >= 0 ? '+' : ''}${v.toFixed(3)} ms`;
}

export function renderTargets(targets: TargetResult[]): string {
  const mark = (p: boolean | null) => (p === null ? 'n/a ' : p ? 'PASS' : 'FAIL');
  return ['### targets', '', ...targets.map((t) => `- ${mark(t.pass)} ${t.target}: ${t.detail}${t.bound ? `; ${t.bound}` : ''}`), ''].join('\n');
}

/** The shared machine record plus the ONNX Runtime version the serving figures depend on. */
export function machineInfo(ortVersion: string) {
  return { ...sharedMachineInfo(), onnxruntime_node: ortVersion };
}

export const NOTES = [
  'raw: onnxruntime-node InferenceSession.run in the bench process, sequential calls on one prebuilt batch, session made by tern\'s own createSession (same options as tern); rows/s = batch x runs/s.',
  'raw and naive: intraOpNumThreads = config threads x config instances (the intra-op threads tern may use for the model, given to one session).',
  'tern and naive: child processes on 127.0.0.1, loaded by closed-loop clients in the bench process (same machine: clients and servers share the CPUs; see bench cpu / srv cpu, in cores).',
  'every server request carries 1 row; rps = requests completed inside the measured window / window length (the window lasts the duration and at least until 2 x clients answers came in, at most 60 s); latencies from HDR histograms.',
  'raw: at least one warm-up run and at least 3 measured runs per batch size, however long a run takes.',
  'REST: undici Pool, one connection per client; gRPC: one HTTP/2 session with tern\'s own node:http2 gRPC client (the gateway\'s; a @grpc/grpc-js client costs ~0.45 ms more per call here), request serialized once; clients read whole answers but decode them only in a verification request before the load.',
  'batch / queue ms: tern\'s mean rows per executed batch and mean queue wait from its /metrics, over warm-up and window.',
  'floor: a node:http server that does no work: it reads each request to the end and answers with tern\'s own binary answer to the same request (captured once), over REST binary. Its figures are what this machine charges for the exchange alone; no Node server can beat them, so they bound every target here.',
  'idle vCPUs: on a KVM guest, guest_halt_poll_ns decides whether an idle vCPU halts (a VM exit, and a slow wake-up) or polls first; with 0, 1-client latencies are mostly wake-ups (see the heading and src/bench/halt-poll.ts); --halt-poll-ns sets it for the run.',
  'srv / bench / other cpu: average cores busy in the server process, in the bench process (clients, or raw ORT), and in every other process of the machine (from /proc), during warm-up and window.',
];

export interface WrittenFiles { json: string; markdown: string }

/** Writes `<dir>/<name>.json` and `<dir>/<name>.md`. */
export async function writeResults(dir: string, content: { json: unknown; markdown: string }, name = 'serving'): Promise<WrittenFiles> {
  await mkdir(dir, { recursive: true });
  const json = path.join(dir, `${name}.json`);
  const markdown = path.join(dir, `${name}.md`);
  await writeFile(json, `${JSON.stringify(content.json, null, 2)}\n`);
  await writeFile(markdown, content.markdown);
  return { json, markdown };
}

const measurementKey = (m: Measurement) => `${m.system} ${m.transport} ${JSON.stringify(m.load)}`;

/** Per measurement, the round with the median throughput (rounds that failed count as 0); keeps the order of the first round. */
export function medianRounds(rounds: Measurement[][]): Measurement[] {
  if (rounds.length === 1) return rounds[0];
  return rounds[0].map((first) => {
    const key = measurementKey(first);
    const same = rounds.map((r) => r.find((m) => measurementKey(m) === key)).filter((m): m is Measurement => m !== undefined);
    const rps = (m: Measurement) => m.result?.rps ?? 0;
    return { ...atMedian(same, rps), rounds: same.map(rps).sort((a, b) => a - b) };
  });
}
