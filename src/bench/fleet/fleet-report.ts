/**
 * What the fleet bench found: the figures of issue 3's benchmark, the targets
 * with pass/fail, the details that explain them, as bench/results/fleet.json
 * and as a table on the console.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { MachineInfo } from '../machine-info.js';

type Num = number | null;

export interface TargetResult { target: string; value: Num; pass: boolean }

export interface FleetResults {
  nodes: number;
  heartbeat_hz: number;
  control_cpu_percent: Num;
  control_rss_mb: Num;
  replicas: number;
  schedule_1000_replicas_ms: Num;
  all_ready_ms: Num;
  failure_detect_ms_p50: Num;
  failure_detect_ms_max: Num;
  hung_detect_ms_p50: Num;
  hung_detect_ms_max: Num;
  machine: MachineInfo;
  date: string;
  targets: Record<'control_cpu' | 'schedule' | 'failure_detect' | 'hung_detect', TargetResult>;
  details: Record<string, unknown>;
  notes: string[];
}

export { loadAverage, machineInfo } from '../machine-info.js';

export function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** Nearest-rank percentile of unsorted values; null for none. */
export function percentile(values: readonly number[], q: number): Num {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

export const TARGETS = {
  controlCpuPercent: 50,
  scheduleMs: 2000,
  detectMs: 3000,
} as const;

export function evaluateTargets(r: Pick<FleetResults, 'nodes' | 'heartbeat_hz' | 'control_cpu_percent' | 'schedule_1000_replicas_ms' | 'failure_detect_ms_max' | 'hung_detect_ms_max' | 'replicas'>, missed: { failures: number; hung: number }): FleetResults['targets'] {
  const under = (v: Num, limit: number) => v !== null && v < limit;
  return {
    control_cpu: {
      target: `control plane < ${TARGETS.controlCpuPercent}% of one core at ${r.nodes} nodes x ${r.heartbeat_hz} Hz`,
      value: r.control_cpu_percent, pass: under(r.control_cpu_percent, TARGETS.controlCpuPercent),
    },
    schedule: {
      target: `${r.replicas} replicas scheduled in < ${TARGETS.scheduleMs} ms`,
      value: r.schedule_1000_replicas_ms, pass: under(r.schedule_1000_replicas_ms, TARGETS.scheduleMs),
    },
    failure_detect: {
      target: `every killed node detected down in < ${TARGETS.detectMs} ms (max)`,
      value: r.failure_detect_ms_max, pass: missed.failures === 0 && under(r.failure_detect_ms_max, TARGETS.detectMs),
    },
    hung_detect: {
      target: `every hung node detected down in < ${TARGETS.detectMs} ms after its last heartbeat (max)`,
      value: r.hung_detect_ms_max, pass: missed.hung === 0 && under(r.hung_detect_ms_max, TARGETS.detectMs),
    },
  };
}

function show(v: Num, unit = ''): string {
  return v === null ? 'n/a' : `${v}${unit}`;
}

/** The console table: figures, then targets. */
export function renderTable(r: FleetResults): string {
  const d = r.details as Record<string, Record<string, unknown> | undefined>;
  const rows: [string, string][] = [
    ['nodes x heartbeat', `${r.nodes} x ${r.heartbeat_hz} Hz`],
    ['control cpu (steady)', `${show(r.control_cpu_percent, '% of one core')}`],
    ['control rss (steady)', show(r.control_rss_mb, ' MB')],
    ['control cpu (with replicas)', show((d.steady_with_replicas?.control_cpu_percent as Num) ?? null, '% of one core')],
    ['bench / other processes cpu', `${show((d.steady?.bench_cpu_percent as Num) ?? null, '%')} / ${show((d.steady?.other_cpu_percent as Num) ?? null, '%')} (steady window)`],
    ['fleet messages at control', show((d.steady?.fleet_messages_received_per_s as Num) ?? null, '/s')],
    [`schedule ${r.replicas} replicas`, show(r.schedule_1000_replicas_ms, ' ms')],
    [`all ${r.replicas} ready`, show(r.all_ready_ms, ' ms')],
    ['failure detect p50 / max', `${show(r.failure_detect_ms_p50, ' ms')} / ${show(r.failure_detect_ms_max, ' ms')}`],
    ['hung detect p50 / max', `${show(r.hung_detect_ms_p50, ' ms')} / ${show(r.hung_detect_ms_max, ' ms')}`],
    ['load avg start / end', `${r.machine.load_average_at_start.join(' ')} / ${(r.machine.load_average_at_end ?? []).join(' ')}`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  const lines = ['', 'fleet bench', ...rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`), '', 'targets'];
  for (const t of Object.values(r.targets)) lines.push(`  ${t.pass ? 'PASS' : 'FAIL'}  ${t.target}: ${show(t.value)}`);
  return `${lines.join('\n')}\n`;
}

/** Writes `<dir>/fleet.json` (via a temporary file, so a reader never sees half of it). */
export async function writeResults(dir: string, r: FleetResults): Promise<string> {
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, 'fleet.json');
  await writeFile(`${file}.tmp`, `${JSON.stringify(r, null, 2)}\n`);
  await rename(`${file}.tmp`, file);
  return file;
}
