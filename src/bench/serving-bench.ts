/**
 * The serving benchmark (a benchmark, not a test: it prints figures and
 * ratios measured in one run, never fails on them). For each model:
 *  (a) raw ONNX Runtime `session.run` in this process at batch 1..32: the limit;
 *  (b) `tern serve` as a child process, loaded over loopback by closed-loop
 *      clients over REST JSON, REST binary and gRPC with 1 and 32 clients;
 *  (c) a naive fastify + onnxruntime-node server (naive-server.ts) with 1 and 32 clients;
 *  (d) the floor (floor-server.ts): a server that does no work and answers
 *      tern's own bytes over REST binary, 1 and 32 clients. It shows what
 *      this machine charges for the HTTP exchange alone, so the report can say
 *      how much of tern's cost is tern's and which targets no server could meet here.
 * Writes bench/results/serving.json and serving.md.
 *
 * With --rounds N the server measurements are repeated N times, rotating
 * the order of the servers, and each figure is the round with the median
 * throughput: on a shared or virtual machine single windows drift by tens of
 * percent, and alternating keeps the drift from favouring whichever ran last.
 *
 *   npm run bench:serving -- [--models synthetic-small,ocr-rec] [--duration 5] [--warmup 1] [--rounds 3]
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import ort from 'onnxruntime-node';
import { Pool } from 'undici';
import { writeDemoRepository } from '../models/demo-repository.js';
import { ChildServer, freePort, stopAllChildren } from './child-servers.js';
import { runClosedLoop } from './load-generator.js';
import { buildInputs, fetchModelMetadata, hasBatchDim, type BenchTensor, type ModelMetadata } from './model-inputs.js';
import { BenchProgress } from './progress.js';
import {
  H2GrpcChannel, grpcClient, type InferChannel, restBinaryClient, restBinaryRequest, restJsonClient, TRANSPORTS, type BenchClient, type Transport,
} from './protocol-clients.js';
import { RawSession, readServingConfig, type ServingConfig } from './raw-onnx.js';
import {
  CLIENT_COUNTS, evaluateTargets, SYSTEM_ORDER, medianRounds, machineInfo, noisyMeasurements, NOISY_OTHER_CORES, NOTES, RAW_BATCHES, renderModel, renderTargets, summarizeModel, writeResults,
  type Measurement, type ModelRun,
} from './report.js';
import { batchStatsBetween, scrapeBatchCounters, startCpuMeter } from './server-stats.js';
import { optionsOrExit } from './options.js';
import { describeIdle, haltPollOption, setHaltPollForRun } from './halt-poll.js';

const DEFAULT_MODELS = ['synthetic-small', 'synthetic-medium', 'ocr-rec'];
const HOST = '127.0.0.1';
const MAX_CLIENTS = Math.max(...CLIENT_COUNTS);
/** Measurements per model: raw batches, tern transports x client counts, naive and floor client counts. */
const SERVER_STEPS = TRANSPORTS.length * CLIENT_COUNTS.length + 2 * CLIENT_COUNTS.length;
const stepsPerModel = (rounds: number) => RAW_BATCHES.length + rounds * SERVER_STEPS;

interface Options {
  models: string[];
  durationMs: number;
  warmupMs: number;
  rounds: number;
  repository: string;
  out: string;
  /** guest_halt_poll_ns to set for the run (halt-poll.ts); undefined: leave the machine as it is. */
  haltPollNs?: number;
}

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      models: { type: 'string', default: DEFAULT_MODELS.join(',') },
      duration: { type: 'string', default: '5' },
      warmup: { type: 'string', default: '1' },
      rounds: { type: 'string', default: '3' },
      repository: { type: 'string', default: '.tern/bench-repository' },
      out: { type: 'string', default: 'bench/results' },
      'halt-poll-ns': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write([
      'usage: npm run bench:serving -- [options]',
      `  --models a,b       models to measure (default ${DEFAULT_MODELS.join(',')})`,
      '  --duration S       seconds per measurement (default 5)',
      '  --warmup S         warm-up seconds before each measurement, not counted (default 1)',
      '  --rounds N         measure tern, the naive server and the floor N times in rotating order; report the median round (default 3)',
      '  --repository DIR   where the demo repository is written afresh (default .tern/bench-repository)',
      '  --out DIR          where serving.json and serving.md go (default bench/results)',
      '  --halt-poll-ns N   KVM guests: let idle vCPUs poll N ns before halting, for this run (root; the kernel default is 200000)',
      '',
    ].join('\n'));
    process.exit(0);
  }
  const seconds = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number of seconds >= ${min}, got '${v}'`);
    return n * 1000;
  };
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a whole number >= 1, got '${values.rounds}'`);
  const models = values.models.split(',').map((s) => s.trim()).filter(Boolean);
  if (models.length === 0) throw new Error('--models needs at least one model name');
  return {
    models,
    durationMs: seconds('duration', values.duration, 0.1),
    warmupMs: seconds('warmup', values.warmup, 0),
    rounds,
    repository: path.resolve(values.repository),
    out: path.resolve(values.out),
    haltPollNs: haltPollOption(values['halt-poll-ns']),
  };
}

const errorText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** What every model's measurements share. */
interface Context {
  opts: Options;
  progress: BenchProgress;
  tern: ChildServer;
  ternUrl: string;
  ternPool: Pool;
  grpc: InferChannel;
  /** Where the floor's captured answers are written. */
  scratch: string;
}

function plannedMs(opts: Options): number {
  return opts.warmupMs + opts.durationMs;
}

/** Records planned measurements that cannot run, with the reason, and moves the progress past them. */
function skipSteps(ctx: Context, run: ModelRun, template: Omit<Measurement, 'error'>[], error: string): void {
  for (const m of template) {
    ctx.progress.step(`${run.model} ${m.system} ${m.transport} (skipped)`, plannedMs(ctx.opts)).finish();
    run.measurements.push({ ...m, error });
  }
}

async function measureRaw(ctx: Context, run: ModelRun, meta: ModelMetadata, serving: ServingConfig, modelFile: string): Promise<void> {
  const template = RAW_BATCHES.map((b): Omit<Measurement, 'error'> => ({ system: 'raw', transport: 'in-process', load: { batch: b }, rowsPerRequest: b }));
  if (!hasBatchDim(meta)) return skipSteps(ctx, run, template, 'the model has no batch dimension');
  let session: RawSession;
  try {
    session = await RawSession.open(modelFile, serving.intraOpThreads);
  } catch (err) {
    return skipSteps(ctx, run, template, `could not open the session: ${errorText(err)}`);
  }
  try {
    for (const base of template) {
      const batch = (base.load as { batch: number }).batch;
      const step = ctx.progress.step(`${run.model} raw ORT batch ${batch}`, plannedMs(ctx.opts));
      const m: Measurement = { ...base };
      try {
        const cpu = startCpuMeter();
        m.result = await session.measure(buildInputs(meta, batch), ctx.opts.warmupMs, ctx.opts.durationMs, step.tick);
        m.cpu = cpu();
      } catch (err) {
        m.error = errorText(err);
      }
      step.finish();
      run.measurements.push(m);
    }
  } finally {
    await session.release();
  }
}

/** Verifies the client once, then loads it with each client count. */
async function measureServer(
  ctx: Context, run: ModelRun, system: 'tern' | 'naive' | 'floor', transport: Transport, client: BenchClient,
  server: ChildServer, metricsUrl?: string,
): Promise<void> {
  let answer: string | undefined;
  let verifyError: string | undefined;
  try {
    answer = await client.verify();
  } catch (err) {
    verifyError = `verification request failed: ${errorText(err)}`;
  }
  for (const clients of CLIENT_COUNTS) {
    const step = ctx.progress.step(`${run.model} ${system} ${transport} ${clients} client${clients === 1 ? '' : 's'}`, plannedMs(ctx.opts));
    const m: Measurement = { system, transport, load: { clients }, rowsPerRequest: 1, ...(answer ? { answer } : {}) };
    if (verifyError) {
      m.error = verifyError;
    } else if (!server.running) {
      m.error = `${server.name} is not running; its last output:\n${server.output()}`;
    } else {
      const before = metricsUrl ? await scrapeBatchCounters(metricsUrl, run.model) : undefined;
      const cpu = startCpuMeter(server.pid);
      m.result = await runClosedLoop({
        concurrency: clients, warmupMs: ctx.opts.warmupMs, durationMs: ctx.opts.durationMs, send: () => client.send(), onProgress: step.tick,
      });
      m.cpu = cpu();
      const stats = metricsUrl ? batchStatsBetween(before, await scrapeBatchCounters(metricsUrl, run.model)) : undefined;
      if (stats) m.batchStats = stats;
      if (m.result.requests === 0 && m.result.errors > 0) m.error = m.result.firstError ?? 'every request failed';
    }
    step.finish();
    run.measurements.push(m);
  }
}

async function measureTern(ctx: Context, run: ModelRun, inputs: BenchTensor[]): Promise<void> {
  const clients: Record<Transport, BenchClient> = {
    'rest-json': restJsonClient(ctx.ternPool, run.model, inputs),
    'rest-binary': restBinaryClient(ctx.ternPool, run.model, inputs),
    grpc: grpcClient(ctx.grpc, run.model, inputs),
  };
  for (const transport of TRANSPORTS) {
    await measureServer(ctx, run, 'tern', transport, clients[transport], ctx.tern, ctx.ternUrl);
  }
}

/** A comparison server (naive or floor) started for one round of one model, loaded, and stopped. */
async function measureOtherServer(
  ctx: Context, run: ModelRun, system: 'naive' | 'floor', transport: Transport,
  start: (port: number) => Promise<ChildServer>, client: (pool: Pool) => BenchClient,
): Promise<void> {
  const port = await freePort(HOST);
  let server: ChildServer | undefined;
  let pool: Pool | undefined;
  try {
    try {
      server = await start(port);
    } catch (err) {
      const template = CLIENT_COUNTS.map((clients): Omit<Measurement, 'error'> => ({ system, transport, load: { clients }, rowsPerRequest: 1 }));
      return skipSteps(ctx, run, template, errorText(err));
    }
    pool = new Pool(`http://${HOST}:${port}`, { connections: MAX_CLIENTS, pipelining: 1 });
    await measureServer(ctx, run, system, transport, client(pool), server);
  } finally {
    await pool?.close();
    await server?.stop();
  }
}

function measureNaive(ctx: Context, run: ModelRun, inputs: BenchTensor[], serving: ServingConfig, modelFile: string): Promise<void> {
  return measureOtherServer(ctx, run, 'naive', 'rest-json', (port) => ChildServer.start({
    name: 'naive server',
    script: fileURLToPath(new URL('./naive-server.js', import.meta.url)),
    args: ['--model-file', modelFile, '--model-name', run.model, '--threads', String(serving.intraOpThreads), '--host', HOST, '--port', String(port)],
    readyUrl: `http://${HOST}:${port}/v2/health/ready`,
  }), (pool) => restJsonClient(pool, run.model, inputs));
}

/** tern's binary answer to the bench's request, to be replayed by the floor server. */
async function captureTernAnswer(ctx: Context, model: string, inputs: BenchTensor[]): Promise<CapturedAnswer> {
  const res = await ctx.ternPool.request(restBinaryRequest(model, inputs));
  const body = Buffer.from(await res.body.arrayBuffer());
  const headerLength = Number(res.headers['inference-header-content-length']);
  if (res.statusCode !== 200 || !Number.isInteger(headerLength)) throw new Error(`tern did not answer the floor's sample request in binary (HTTP ${res.statusCode})`);
  const file = path.join(ctx.scratch, `${model}.answer`);
  await writeFile(file, body);
  return { file, headerLength };
}

type CapturedAnswer = { file: string; headerLength: number };

function measureFloor(ctx: Context, run: ModelRun, inputs: BenchTensor[], captured: () => Promise<CapturedAnswer>): Promise<void> {
  return measureOtherServer(ctx, run, 'floor', 'rest-binary', async (port) => {
    const answer = await captured();
    return ChildServer.start({
      name: 'floor server',
      script: fileURLToPath(new URL('./floor-server.js', import.meta.url)),
      args: ['--answer-file', answer.file, '--header-length', String(answer.headerLength), '--host', HOST, '--port', String(port)],
      readyUrl: `http://${HOST}:${port}/`,
    });
  }, (pool) => restBinaryClient(pool, run.model, inputs));
}

async function benchModel(ctx: Context, model: string): Promise<ModelRun> {
  const run: ModelRun = { model, measurements: [] };
  let meta: ModelMetadata;
  let serving: ServingConfig;
  let inputs: BenchTensor[];
  try {
    meta = await fetchModelMetadata(ctx.ternUrl, model);
    serving = await readServingConfig(ctx.opts.repository, model);
    inputs = buildInputs(meta, 1);
  } catch (err) {
    run.error = errorText(err);
    for (let i = 0; i < stepsPerModel(ctx.opts.rounds); i++) ctx.progress.step(`${model} (not measured)`, plannedMs(ctx.opts)).finish();
    return run;
  }
  run.inputs = inputs.map((t) => ({ name: t.name, datatype: t.datatype, shape: t.shape }));
  run.serving = serving;
  const version = [...meta.versions].sort((a, b) => Number(b) - Number(a))[0];
  const modelFile = path.join(ctx.opts.repository, model, version, 'model.onnx');
  ctx.progress.log(`${model}: input ${run.inputs.map((i) => `${i.name} [${i.shape.join(',')}]`).join(', ')}, intraOpNumThreads ${serving.intraOpThreads}`);
  await measureRaw(ctx, run, meta, serving, modelFile);
  let answer: Promise<CapturedAnswer> | undefined; // captured once per model, replayed in every round
  const servers = [
    (round: ModelRun) => measureTern(ctx, round, inputs),
    (round: ModelRun) => measureNaive(ctx, round, inputs, serving, modelFile),
    (round: ModelRun) => measureFloor(ctx, round, inputs, () => (answer ??= captureTernAnswer(ctx, model, inputs))),
  ];
  const rounds: Measurement[][] = [];
  for (let r = 0; r < ctx.opts.rounds; r++) {
    const round: ModelRun = { model, measurements: [] };
    // Rotate which server goes first, so a drifting machine favours none.
    for (let k = 0; k < servers.length; k++) await servers[(r + k) % servers.length](round);
    // The report lists tern, naive and floor in this order whichever ran first.
    round.measurements.sort((a, b) => SYSTEM_ORDER.indexOf(a.system) - SYSTEM_ORDER.indexOf(b.system));
    rounds.push(round.measurements);
  }
  run.measurements.push(...medianRounds(rounds));
  return run;
}

async function startTern(repository: string): Promise<{ server: ChildServer; httpPort: number; grpcPort: number }> {
  const httpPort = await freePort(HOST);
  let grpcPort = await freePort(HOST);
  while (grpcPort === httpPort) grpcPort = await freePort(HOST);
  const server = await ChildServer.start({
    name: 'tern serve',
    script: fileURLToPath(new URL('../cli/main.js', import.meta.url)),
    args: ['serve', '--model-repository', repository, '--http-port', String(httpPort), '--grpc-port', String(grpcPort), '--host', HOST, '--no-watch'],
    env: { TERN_LOG_LEVEL: process.env.TERN_LOG_LEVEL ?? 'warn' },
    readyUrl: `http://${HOST}:${httpPort}/v2/health/ready`,
  });
  return { server, httpPort, grpcPort };
}

function configJson(c: ServingConfig | undefined) {
  return c && { threads: c.threads, instances: c.instances, execution: c.execution, intra_op_threads: c.intraOpThreads, max_batch_size: c.maxBatchSize, batching: c.batching };
}

async function main(): Promise<void> {
  const opts = optionsOrExit('bench:serving', () => {
    const o = parseOptions(process.argv.slice(2));
    if (o.haltPollNs !== undefined) setHaltPollForRun(o.haltPollNs);
    return o;
  });
  const date = new Date().toISOString();
  const machine = machineInfo(ort.env.versions.node ?? 'unknown');
  process.stderr.write(`writing the bench repository (${opts.models.join(', ')}) to ${opts.repository}\n`);
  await rm(opts.repository, { recursive: true, force: true });
  await writeDemoRepository(opts.repository, { models: opts.models });

  const steps = opts.models.length * stepsPerModel(opts.rounds);
  const progress = new BenchProgress(steps * plannedMs(opts), steps);
  const runs: ModelRun[] = [];
  let tern: ChildServer | undefined;
  let ternPool: Pool | undefined;
  let grpc: InferChannel | undefined;
  let scratch: string | undefined;
  try {
    const started = await startTern(opts.repository);
    tern = started.server;
    const ternUrl = `http://${HOST}:${started.httpPort}`;
    progress.log(`tern serve is up (pid ${tern.pid}, HTTP ${started.httpPort}, gRPC ${started.grpcPort})`);
    ternPool = new Pool(ternUrl, { connections: MAX_CLIENTS, pipelining: 1 });
    grpc = new H2GrpcChannel(`${HOST}:${started.grpcPort}`);
    scratch = await mkdtemp(path.join(tmpdir(), 'tern-bench-'));
    const ctx: Context = { opts, progress, tern, ternUrl, ternPool, grpc, scratch };
    for (const model of opts.models) runs.push(await benchModel(ctx, model));
  } finally {
    progress.stop();
    grpc?.close();
    await ternPool?.close();
    await tern?.stop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  }

  const summaries = runs.map(summarizeModel);
  const targets = evaluateTargets(summaries);
  const noisy = noisyMeasurements(runs);
  const heading = [
    `## tern serving bench, ${date}`,
    '',
    `machine: ${machine.cpu_count} x ${machine.cpu_model}, ${machine.memory_gb} GB, Node ${machine.node}, ${machine.platform}, onnxruntime-node ${machine.onnxruntime_node}`,
    `idle vCPUs: ${describeIdle(machine.idle, opts.haltPollNs !== undefined)}`,
    `each measurement: ${opts.warmupMs / 1000} s warm-up (not counted) + ${opts.durationMs / 1000} s${opts.rounds > 1 ? `, servers alternated over ${opts.rounds} rounds, median round shown` : ''}; load average at start ${machine.load_average_at_start.join(' ')}`,
    '',
    ...(noisy.length > 0
      ? [`WARNING: other processes used more than ${NOISY_OTHER_CORES} cores during ${noisy.length} measurement(s), whose figures are skewed: ${noisy.join(', ')}`, '']
      : []),
  ].join('\n');
  const body = runs.map((r, i) => renderModel(r, summaries[i])).join('\n');
  const markdown = [heading, body, renderTargets(targets), '### how it was measured', '', ...NOTES.map((n) => `- ${n}`), ''].join('\n');
  process.stdout.write(`\n${markdown}`);

  const files = await writeResults(opts.out, {
    markdown,
    json: {
      date,
      machine,
      settings: {
        models: opts.models, duration_s: opts.durationMs / 1000, warmup_s: opts.warmupMs / 1000, rounds: opts.rounds,
        raw_batches: RAW_BATCHES, clients: CLIENT_COUNTS, halt_poll_ns_set: opts.haltPollNs ?? null,
      },
      notes: NOTES,
      noisy_measurements: noisy,
      models: summaries.map((s, i) => ({ ...s, inputs: runs[i].inputs, config: configJson(runs[i].serving), measurements: runs[i].measurements })),
      targets,
    },
  });
  process.stdout.write(`\nwrote ${path.relative(process.cwd(), files.json)} and ${path.relative(process.cwd(), files.markdown)}\n`);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: stopping the servers under test\n`);
    void stopAllChildren().finally(() => process.exit(130));
  });
}

main().catch(async (err: unknown) => {
  process.stderr.write(`serving bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  await stopAllChildren();
  process.exit(1);
});
