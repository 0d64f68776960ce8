/**
 * `npm run bench:runtimes`: the same model replica as a process (`tern serve`
 * child, cgroup limits) and as a container (the model-server image through
 * the Engine API, engine limits), both through the agent's real runtime
 * drivers. Per runtime and round:
 *
 * - cold start: from the driver's start call to the first successful
 *   inference (the image already on the engine);
 * - steady latency: one closed-loop client over REST (binary tensors) for a
 *   fixed window: mean, stdev, p50, p99;
 * - host CPU: cores busy on the whole machine during that window, and in the
 *   replica's own process.
 *
 * Runtimes alternate within each round, and each figure is the median of its
 * rounds, so drift on a shared machine hits both alike. Writes
 * bench/results/runtimes.json. Targets: container latency within 3% of the
 * process runtime; container cold start < 3 s.
 *
 * Options: --engine URL (default: a Podman service started here), --model,
 * --seconds (window), --rounds.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { ContainerDriver } from '../agent/drivers/container-driver.js';
import type { ReplicaHandle, RuntimeDriver } from '../agent/drivers/driver.js';
import { ProcessDriver } from '../agent/drivers/process-driver.js';
import { defaultEngineUrl, connectEngine, type Engine } from '../containers/engine.js';
import { buildImage } from '../containers/image-build.js';
import { inspectImage, loadImageArchive } from '../containers/images.js';
import { startLocalEngine, type LocalEngine } from '../containers/local-engine.js';
import { hostPlatform } from '../containers/platform.js';
import { writeDemoRepository } from '../models/demo-repository.js';
import type { ReplicaSpec } from '../protocol/fleet.js';
import { loadAverage, machineInfo } from './machine-info.js';
import { buildInputs, fetchModelMetadata } from './model-inputs.js';
import { restBinaryClient, type BenchClient } from './protocol-clients.js';
import { startCpuMeter } from './server-stats.js';
import { median } from './median.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const RUNTIMES = ['process', 'container'] as const;
type Runtime = (typeof RUNTIMES)[number];
const PORT = 25900;

interface RoundFigures {
  cold_start_ms: number;
  requests: number;
  mean_ms: number;
  stdev_ms: number;
  p50_ms: number;
  p99_ms: number;
  host_cpu_cores: number;
  replica_cpu_cores?: number;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

function stats(latencies: number[]): Pick<RoundFigures, 'requests' | 'mean_ms' | 'stdev_ms' | 'p50_ms' | 'p99_ms'> {
  const sorted = [...latencies].sort((a, b) => a - b);
  const mean = sorted.reduce((s, v) => s + v, 0) / sorted.length;
  const variance = sorted.reduce((s, v) => s + (v - mean) ** 2, 0) / Math.max(1, sorted.length - 1);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { requests: sorted.length, mean_ms: mean, stdev_ms: Math.sqrt(variance), p50_ms: at(0.5), p99_ms: at(0.99) };
}

async function firstInference(url: string, model: string): Promise<BenchClient> {
  const meta = await fetchModelMetadata(url, model);
  const pool = new Pool(url, { connections: 1 });
  const client = restBinaryClient(pool, model, buildInputs(meta, 1));
  await client.verify();
  return client;
}

/** Starts a replica, times it to its first answer, measures a steady window, stops it. */
async function measure(driver: RuntimeDriver, spec: ReplicaSpec, modelDir: string, seconds: number): Promise<RoundFigures> {
  const started = performance.now();
  const handle: ReplicaHandle = await driver.start(spec, modelDir, PORT);
  try {
    const url = `http://127.0.0.1:${PORT}`;
    const client = await firstInference(url, spec.deployment);
    const cold = performance.now() - started;
    for (let i = 0; i < 50; i++) await client.send(); // warm-up
    const meter = startCpuMeter(handle.pid);
    const latencies: number[] = [];
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
      const t = performance.now();
      await client.send();
      latencies.push(performance.now() - t);
    }
    const cpu = meter();
    return {
      cold_start_ms: cold, ...stats(latencies),
      host_cpu_cores: cpu.clientCores + (cpu.serverCores ?? 0) + (cpu.otherCores ?? 0),
      ...(cpu.serverCores !== undefined ? { replica_cpu_cores: cpu.serverCores } : {}),
    };
  } finally {
    await handle.stop(2000);
  }
}

async function engineFor(url: string | undefined, workDir: string): Promise<{ engine: Engine; local?: LocalEngine }> {
  const named = url ?? defaultEngineUrl();
  if (named) return { engine: await connectEngine(named) };
  const local = await startLocalEngine('podman', { name: 'tern-bench', workDir });
  return { engine: local.engine, local };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: {
    engine: { type: 'string' }, model: { type: 'string', default: 'synthetic-medium' },
    seconds: { type: 'string', default: '8' }, rounds: { type: 'string', default: '3' },
  } });
  const model = values.model!;
  const seconds = Number(values.seconds);
  const rounds = Number(values.rounds);
  const platform = hostPlatform();
  if (!platform) throw new Error(`bench:runtimes needs linux/amd64 or linux/arm64, not ${process.platform}/${process.arch}`);
  const info = machineInfo();
  const work = await mkdtemp(path.join(tmpdir(), 'tern-bench-runtimes-'));
  const { engine, local } = await engineFor(values.engine, path.join(work, 'engine'));
  try {
    const repo = path.join(work, 'repo');
    await writeDemoRepository(repo, { models: [model] });
    const built = await buildImage({ platform, projectRoot: ROOT });
    const present = await inspectImage(engine, built.tag);
    if (present?.labels['tern.inputs'] !== built.inputsHash) await loadImageArchive(engine, built.archive);
    process.stderr.write(`image ${built.tag}: ${(built.sizeBytes / 1e6).toFixed(1)} MB on ${engine.kind} ${engine.version}\n`);

    const config = JSON.parse(await readFile(path.join(repo, model, 'config.json'), 'utf8')) as Record<string, unknown>;
    // Both get the whole machine: the comparison is of the runtimes, not of their limits.
    const spec = (runtime: Runtime): ReplicaSpec => ({
      id: `bench-${runtime}`, deployment: model, model, version: '1', sha256: '0'.repeat(64), format: 'onnx', runtime,
      resources: { cpu: os.cpus().length, memory_mb: 2048 }, config, generation: 1,
    });
    const dataDir = path.join(work, 'agent');
    const drivers: Record<Runtime, RuntimeDriver> = {
      process: new ProcessDriver({ dataDir }),
      container: new ContainerDriver({ dataDir, engine: engine.url }),
    };
    const results: Record<Runtime, RoundFigures[]> = { process: [], container: [] };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? RUNTIMES : [...RUNTIMES].reverse();
      for (const runtime of order) {
        const figures = await measure(drivers[runtime], spec(runtime), path.join(repo, model, '1'), seconds);
        results[runtime].push(figures);
        process.stderr.write(`round ${r + 1}/${rounds} ${runtime}: cold start ${figures.cold_start_ms.toFixed(0)} ms, `
          + `mean ${figures.mean_ms.toFixed(2)} ms, stdev ${figures.stdev_ms.toFixed(2)}, p99 ${figures.p99_ms.toFixed(2)}, host cpu ${figures.host_cpu_cores.toFixed(2)} cores\n`);
      }
    }
    const summary = Object.fromEntries(RUNTIMES.map((rt) => {
      const rs = results[rt];
      const keys = Object.keys(rs[0]) as (keyof RoundFigures)[];
      return [rt, Object.fromEntries(keys.map((k) => [k, round2(median(rs.map((x) => x[k] ?? 0)))]))];
    })) as unknown as Record<Runtime, RoundFigures>;
    const latencyRatio = summary.container.mean_ms / summary.process.mean_ms;
    const report = {
      bench: 'runtimes', model, batch: 1, transport: 'rest-binary', window_s: seconds, rounds,
      image: { tag: built.tag, size_mb: round2(built.sizeBytes / 1e6) },
      engine: { kind: engine.kind, version: engine.version },
      machine: { ...info, load_average_at_end: loadAverage() },
      runtimes: summary, per_round: results,
      container_vs_process_mean_latency: round2(latencyRatio),
      targets: {
        container_latency_within_3pct: { value: round2(latencyRatio), met: latencyRatio <= 1.03 },
        container_cold_start_under_3s: { value_ms: summary.container.cold_start_ms, met: summary.container.cold_start_ms < 3000 },
      },
    };
    const out = path.join(ROOT, 'bench', 'results', 'runtimes.json');
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`runtime     cold start   mean     stdev    p50      p99      host cpu`);
    for (const rt of RUNTIMES) {
      const s = summary[rt];
      console.log(`${rt.padEnd(10)}  ${`${s.cold_start_ms.toFixed(0)} ms`.padEnd(11)}  ${s.mean_ms.toFixed(2).padEnd(7)}  ${s.stdev_ms.toFixed(2).padEnd(7)}  ${s.p50_ms.toFixed(2).padEnd(7)}  ${s.p99_ms.toFixed(2).padEnd(7)}  ${s.host_cpu_cores.toFixed(2)} cores`);
    }
    console.log(`container / process mean latency: ${latencyRatio.toFixed(3)} (target <= 1.03: ${latencyRatio <= 1.03 ? 'met' : 'not met'}); `
      + `container cold start ${summary.container.cold_start_ms.toFixed(0)} ms (target < 3000: ${summary.container.cold_start_ms < 3000 ? 'met' : 'not met'})`);
    console.log(`wrote ${out}`);
  } finally {
    await local?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:runtimes: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
