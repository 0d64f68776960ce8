/**
 * The fleet benchmark (issue 3; a benchmark, not a test: it prints figures and
 * pass/fail against the targets, and never fails on them).
 *
 * The control plane runs alone in a child process (control-child.ts), so its
 * CPU time and RSS are its own; N simulated agents (simulated-agents.ts) run
 * in this process, join through the REST API, keep real agent MQTT sessions
 * and heartbeat at `--hz`. Steps:
 *  1. start the control plane, log in as admin, upload a small real ONNX model
 *     through the upload API, create a join token;
 *  2. N agents join and connect, then heartbeat;
 *  3. steady state: control CPU (% of one core, from /proc utime + stime over
 *     wall time) and RSS (VmRSS) over `--steady` seconds;
 *  4. deploy `--replicas` replicas: time until all are placed (GET /deployments)
 *     and until all are reported ready by the agents; then the steady state
 *     again with the replicas in every heartbeat;
 *  5. failure detection: `--kills` agents have their TCP connection reset, one
 *     every `--kill-gap-ms`; each counts from the reset to the `node.down`
 *     event's timestamp in the control's event log; then `--hung` agents stop
 *     right after a heartbeat without closing anything (heartbeat timeout).
 * Writes bench/results/fleet.json and prints a table.
 *
 *   npm run bench:fleet -- [--nodes 1000] [--hz 1] [--steady 15] [--replicas 1000] ...
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildSyntheticModel } from '../../models/synthetic.js';
import { BenchProgress } from '../progress.js';
import { startCpuMeter } from '../server-stats.js';
import { ControlClient, type DeploymentSummary } from './control-client.js';
import { ControlProcess, killAllControlProcesses } from './control-process.js';
import { evaluateTargets, loadAverage, machineInfo, percentile, renderTable, round, writeResults, type FleetResults } from './fleet-report.js';
import { SimulatedFleet, type SimulatedAgent } from './simulated-agents.js';
import { optionsOrExit } from '../options.js';

interface Options {
  nodes: number;
  hz: number;
  steadyMs: number;
  settleMs: number;
  replicas: number;
  deployments: number;
  replicaStartMs: number;
  kills: number;
  hung: number;
  gapMs: number;
  heartbeatTimeoutMs?: number;
  joinConcurrency: number;
  out: string;
  profile: boolean;
  keep: boolean;
}

const MODEL = 'fleet-bench-small';
const DEPLOYMENT = 'fleet-bench';
const ADMIN = 'admin';
const POLL_PLACED_MS = 20;
const POLL_READY_MS = 50;
const POLL_EVENTS_MS = 50;
const DEPLOY_TIMEOUT_MS = 180_000;
const DETECT_TIMEOUT_MS = 20_000;
const CONNECT_TIMEOUT_MS = 60_000;

const HELP = `usage: npm run bench:fleet -- [options]
  --nodes N               simulated agents (default 1000)
  --hz F                  heartbeats per second per agent (default 1)
  --steady S              seconds of steady-state measurement (default 15)
  --settle S              seconds of heartbeats before measuring (default 3)
  --replicas R            replicas to deploy (default 1000)
  --deployments D         split the replicas over D deployments (default 1; at most 1000 replicas each)
  --replica-start-ms MS   delay between a replica's "starting" and "ready" reports (default 0)
  --kills K               agents whose connection is reset, one at a time (default 20)
  --hung H                agents that stop heartbeating without closing their connection (default 5)
  --gap-ms MS             time between two failures (default 500)
  --heartbeat-timeout-ms  the control plane's heartbeat timeout (default: its own default)
  --join-concurrency C    join requests in flight (default 16)
  --out DIR               where fleet.json goes (default bench/results)
  --profile               write a V8 CPU profile of the control plane (kept with --keep's directory)
  --keep                  keep the temporary directory (control plane data and log)
`;

function parseOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      nodes: { type: 'string', default: '1000' },
      hz: { type: 'string', default: '1' },
      steady: { type: 'string', default: '15' },
      settle: { type: 'string', default: '3' },
      replicas: { type: 'string', default: '1000' },
      deployments: { type: 'string', default: '1' },
      'replica-start-ms': { type: 'string', default: '0' },
      kills: { type: 'string', default: '20' },
      hung: { type: 'string', default: '5' },
      'gap-ms': { type: 'string', default: '500' },
      'heartbeat-timeout-ms': { type: 'string' },
      'join-concurrency': { type: 'string', default: '16' },
      out: { type: 'string', default: 'bench/results' },
      profile: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const num = (name: string, v: string, min: number, max = Infinity, integer = true): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n))) {
      throw new Error(`--${name} must be ${integer ? 'an integer' : 'a number'} from ${min}${max < Infinity ? ` to ${max}` : ''}, got '${v}'`);
    }
    return n;
  };
  const nodes = num('nodes', values.nodes, 1, 20_000);
  const deployments = num('deployments', values.deployments, 1, 100);
  const replicas = num('replicas', values.replicas, 1, deployments * 1000);
  const kills = num('kills', values.kills, 0, nodes);
  const hung = num('hung', values.hung, 0, nodes - kills);
  return {
    nodes,
    hz: num('hz', values.hz, 0.1, 20, false),
    steadyMs: num('steady', values.steady, 1, 3600, false) * 1000,
    settleMs: num('settle', values.settle, 0, 600, false) * 1000,
    replicas,
    deployments,
    replicaStartMs: num('replica-start-ms', values['replica-start-ms'], 0, 60_000),
    kills,
    hung,
    gapMs: num('gap-ms', values['gap-ms'], 0, 60_000),
    heartbeatTimeoutMs: values['heartbeat-timeout-ms'] === undefined ? undefined : num('heartbeat-timeout-ms', values['heartbeat-timeout-ms'], 100, 600_000),
    joinConcurrency: num('join-concurrency', values['join-concurrency'], 1, 1000),
    out: path.resolve(values.out),
    profile: values.profile,
    keep: values.keep,
  };
}

/** Removes the temporary directory when the bench is interrupted (unless --keep). */
let removeWorkDir: (() => void) | undefined;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits `ms`, reporting progress every 250 ms. */
async function waitWithProgress(ms: number, tick: (elapsed: number) => void): Promise<void> {
  const t0 = performance.now();
  while (performance.now() - t0 < ms) {
    await sleep(Math.min(250, ms - (performance.now() - t0)));
    tick(performance.now() - t0);
  }
}

interface Context {
  opts: Options;
  control: ControlProcess;
  api: ControlClient;
  fleet: SimulatedFleet;
  progress: BenchProgress;
}

interface SteadyFigures {
  control_cpu_percent: number;
  control_rss_mb: number;
  control_rss_mb_mean: number;
  bench_cpu_percent: number;
  other_cpu_percent: number | null;
  fleet_messages_received_per_s: number;
  heartbeats_sent_per_s: number;
  heartbeat_send_lag_ms_p99: number;
  heartbeat_send_lag_ms_max: number;
  control_loop_delay_ms_p50: number;
  control_loop_delay_ms_p99: number;
  control_loop_delay_ms_max: number;
  control_heap_mb: number;
  nodes_down_in_window: number;
  seconds: number;
}

/** Control CPU, RSS and message rates over one window of heartbeats. */
async function measureSteady(ctx: Context, label: string, ms: number): Promise<SteadyFigures> {
  const { control, fleet, api } = ctx;
  const step = ctx.progress.step(label, ms);
  const cursor = await api.lastEventId();
  await control.stats(); // resets the event-loop histogram
  ctx.fleet.takeLag();
  const sent0 = fleet.counters.heartbeatsSent;
  const hub0 = (await control.stats()).hubReceived;
  const t0 = performance.now();
  const cpu = startCpuMeter(control.pid);
  const rss: number[] = [];
  while (performance.now() - t0 < ms) {
    await sleep(Math.min(1000, ms - (performance.now() - t0)));
    rss.push(control.rssMb());
    step.tick(performance.now() - t0);
  }
  const use = cpu();
  const seconds = (performance.now() - t0) / 1000;
  const stats = await control.stats();
  const lag = fleet.takeLag();
  const downs = (await api.events(cursor, 'node.down')).events.length;
  step.finish();
  const f: SteadyFigures = {
    control_cpu_percent: round((use.serverCores ?? NaN) * 100),
    control_rss_mb: round(Math.max(...rss)),
    control_rss_mb_mean: round(rss.reduce((a, b) => a + b, 0) / rss.length),
    bench_cpu_percent: round(use.clientCores * 100),
    other_cpu_percent: use.otherCores === undefined ? null : round(use.otherCores * 100),
    fleet_messages_received_per_s: round((stats.hubReceived - hub0) / seconds),
    heartbeats_sent_per_s: round((fleet.counters.heartbeatsSent - sent0) / seconds),
    heartbeat_send_lag_ms_p99: round(lag.p99Ms),
    heartbeat_send_lag_ms_max: round(lag.maxMs),
    control_loop_delay_ms_p50: round(stats.loopDelayP50Ms),
    control_loop_delay_ms_p99: round(stats.loopDelayP99Ms),
    control_loop_delay_ms_max: round(stats.loopDelayMaxMs),
    control_heap_mb: round(stats.heapUsedMb),
    nodes_down_in_window: downs,
    seconds: round(seconds, 2),
  };
  ctx.progress.log(`  ${label}: control ${f.control_cpu_percent}% of a core, RSS ${f.control_rss_mb} MB, ${f.fleet_messages_received_per_s} fleet messages/s at the control `
    + `(sent ${f.heartbeats_sent_per_s}/s, send lag p99 ${f.heartbeat_send_lag_ms_p99} ms), control loop delay p99 ${f.control_loop_delay_ms_p99} ms; `
    + `bench ${f.bench_cpu_percent}%, other processes ${f.other_cpu_percent ?? '?'}%`);
  return f;
}

interface DeployFigures {
  schedule_ms: number | null;
  all_ready_ms: number | null;
  /** From the event log: last replica.scheduled event minus the POST's start. */
  schedule_ms_by_events: number | null;
  /** From the agents: last "ready" report sent minus the POST's start. */
  last_ready_sent_ms: number | null;
  post_ms: number;
  control_cpu_seconds: number;
  placed: number;
  distinct_nodes: number;
  ready: number;
  error?: string;
}

function totals(list: DeploymentSummary[]): { placed: number; ready: number } {
  let placed = 0;
  let ready = 0;
  for (const d of list) {
    if (!d.name.startsWith(DEPLOYMENT)) continue;
    placed += d.status.current_generation;
    ready += d.status.ready;
  }
  return { placed, ready };
}

async function deploy(ctx: Context): Promise<DeployFigures> {
  const { api, opts, control, fleet } = ctx;
  const names = Array.from({ length: opts.deployments }, (_, i) => (opts.deployments === 1 ? DEPLOYMENT : `${DEPLOYMENT}-${i}`));
  const counts = names.map((_, i) => Math.floor(opts.replicas / opts.deployments) + (i < opts.replicas % opts.deployments ? 1 : 0));
  const step = ctx.progress.step(`deploy ${opts.replicas} replicas (${names.length} deployment${names.length > 1 ? 's' : ''}) and wait until all are ready`, 5000);
  const cursor = await api.lastEventId();
  fleet.lastReadyAt = 0;
  const cpu0 = control.cpuSeconds();
  const t0 = Date.now();
  await Promise.all(names.map((name, i) => api.createDeployment({ name, model: MODEL, replicas: counts[i] })));
  const postMs = Date.now() - t0;
  let scheduleMs: number | null = null;
  let readyMs: number | null = null;
  let last = { placed: 0, ready: 0 };
  let error: string | undefined;
  while (readyMs === null) {
    const elapsed = Date.now() - t0;
    if (elapsed > DEPLOY_TIMEOUT_MS) {
      error = `after ${DEPLOY_TIMEOUT_MS} ms only ${last.placed} replicas were placed and ${last.ready} ready`;
      break;
    }
    last = totals(await api.deployments());
    const now = Date.now() - t0;
    if (scheduleMs === null && last.placed >= opts.replicas) {
      scheduleMs = now;
      ctx.progress.log(`  all ${opts.replicas} replicas placed after ${now} ms`);
    }
    if (last.ready >= opts.replicas) readyMs = now;
    step.tick(Math.min(now, 4999));
    if (readyMs === null) await sleep(scheduleMs === null ? POLL_PLACED_MS : POLL_READY_MS);
  }
  const cpuSeconds = control.cpuSeconds() - cpu0;
  // Cross-checks: every replica has a node, and when the scheduler wrote its last placement.
  const details = await Promise.all(names.map((n) => api.deployment(n)));
  const running = details.flatMap((d) => d.replicas.filter((r) => r.desired === 'run' && r.node));
  let lastScheduled = 0;
  for (let since = cursor; ;) {
    const page = await api.events(since, 'replica.scheduled');
    for (const e of page.events) lastScheduled = Math.max(lastScheduled, e.ts);
    if (page.events.length < 1000) break;
    since = page.last_id;
  }
  step.finish();
  const f: DeployFigures = {
    schedule_ms: scheduleMs,
    all_ready_ms: readyMs,
    schedule_ms_by_events: lastScheduled ? lastScheduled - t0 : null,
    last_ready_sent_ms: fleet.lastReadyAt ? fleet.lastReadyAt - t0 : null,
    post_ms: postMs,
    control_cpu_seconds: round(cpuSeconds, 2),
    placed: running.length,
    distinct_nodes: new Set(running.map((r) => r.node)).size,
    ready: running.filter((r) => r.state === 'ready').length,
    ...(error ? { error } : {}),
  };
  ctx.progress.log(`  placed ${f.schedule_ms ?? 'n/a'} ms (last replica.scheduled event at ${f.schedule_ms_by_events ?? 'n/a'} ms, POST answered at ${postMs} ms), `
    + `all ready ${f.all_ready_ms ?? 'n/a'} ms (last ready report sent at ${f.last_ready_sent_ms ?? 'n/a'} ms); ${f.placed} replicas on ${f.distinct_nodes} nodes; `
    + `control used ${f.control_cpu_seconds} CPU s${error ? `; ${error}` : ''}`);
  return f;
}

interface DetectFigures {
  /** Failure to node.down event timestamp, per detected node. */
  detect_ms: number[];
  /** Failure to the moment this bench saw the event through the API (includes the polling interval). */
  observed_ms: number[];
  reasons: Record<string, number>;
  missed: string[];
}

/** Makes `victims` fail one every `gapMs` with `fail`, and waits for each node.down event. */
async function detectFailures(ctx: Context, label: string, victims: SimulatedAgent[], fail: (a: SimulatedAgent) => Promise<void>): Promise<DetectFigures> {
  const { api, opts } = ctx;
  const planned = victims.length * opts.gapMs + 3000;
  const step = ctx.progress.step(label, planned);
  let cursor = await api.lastEventId();
  const byNode = new Map(victims.map((a) => [a.node, a]));
  const found = new Map<string, { ts: number; seenAt: number; reason: string }>();
  const t0 = performance.now();
  let failing = true;
  const poller = (async () => {
    let deadline = Infinity;
    while (found.size < victims.length && Date.now() < deadline) {
      if (!failing && deadline === Infinity) deadline = Date.now() + DETECT_TIMEOUT_MS;
      await sleep(POLL_EVENTS_MS);
      const page = await api.events(cursor, 'node.down');
      const seenAt = Date.now();
      for (const e of page.events) {
        const node = e.subject.replace(/^node\//, '');
        if (byNode.has(node) && !found.has(node)) found.set(node, { ts: e.ts, seenAt, reason: String(e.data?.reason ?? '?') });
      }
      cursor = page.last_id;
      step.tick(performance.now() - t0);
    }
  })();
  try {
    for (const [i, a] of victims.entries()) {
      if (i > 0) await sleep(opts.gapMs);
      await fail(a);
    }
  } finally {
    failing = false;
  }
  await poller;
  step.finish();
  const f: DetectFigures = { detect_ms: [], observed_ms: [], reasons: {}, missed: [] };
  for (const a of victims) {
    const hit = found.get(a.node);
    if (!hit) {
      f.missed.push(a.node);
      continue;
    }
    f.detect_ms.push(hit.ts - a.failedAt);
    f.observed_ms.push(hit.seenAt - a.failedAt);
    f.reasons[hit.reason] = (f.reasons[hit.reason] ?? 0) + 1;
  }
  ctx.progress.log(`  ${label}: detected ${f.detect_ms.length}/${victims.length}, p50 ${percentile(f.detect_ms, 0.5) ?? 'n/a'} ms, max ${percentile(f.detect_ms, 1) ?? 'n/a'} ms `
    + `(reasons ${JSON.stringify(f.reasons)})${f.missed.length ? `; never detected: ${f.missed.join(', ')}` : ''}`);
  return f;
}

/** Resolves once the agent has sent its last heartbeat and hung. */
async function hang(a: SimulatedAgent, hz: number): Promise<void> {
  a.hangAfterNextHeartbeat = true;
  const deadline = Date.now() + 5000 / hz + 1000;
  while (a.state === 'live') {
    if (Date.now() > deadline) throw new Error(`agent ${a.node} sent no heartbeat for ${5 / hz} s (its MQTT link is ${a.link?.connected ? 'up' : 'down'}), so it could not be hung after one`);
    await sleep(5);
  }
}

async function run(opts: Options, tmp: string, progress: BenchProgress): Promise<FleetResults> {
  const date = new Date().toISOString();
  const machine = machineInfo();
  const adminPassword = randomBytes(18).toString('base64url');
  let step = progress.step('start the control plane (child process)', 2000);
  const control = await ControlProcess.start({
    dataDir: path.join(tmp, 'data'), adminPassword, heartbeatMs: Math.round(1000 / opts.hz), heartbeatTimeoutMs: opts.heartbeatTimeoutMs,
    logFile: path.join(tmp, 'control.log'), profileDir: opts.profile ? path.join(tmp, 'profile') : undefined,
  });
  const api = new ControlClient(control.url, Math.max(8, opts.joinConcurrency));
  const fleet = new SimulatedFleet({ nodes: opts.nodes, heartbeatHz: opts.hz, replicaStartMs: opts.replicaStartMs });
  const ctx: Context = { opts, control, api, fleet, progress };
  try {
    await api.login(ADMIN, adminPassword);
    const model = buildSyntheticModel('synthetic-small');
    const version = await api.uploadModel(MODEL, model.onnx, 'onnx');
    const joinToken = await api.createJoinToken(3600);
    const setupCursor = await api.lastEventId();
    step.finish();
    progress.log(`  control plane pid ${control.pid} at ${control.url}, MQTT ${control.mqttUrl}; model ${MODEL} v${version} uploaded (${model.onnx.length} bytes ONNX); RSS ${round(control.rssMb())} MB`);

    step = progress.step(`${opts.nodes} agents join (POST /api/v1/join, ${opts.joinConcurrency} at a time)`, opts.nodes * 5);
    let t = performance.now();
    await fleet.joinAll(api, joinToken, opts.joinConcurrency, (n) => step.tick(n * 5));
    const joinMs = Math.round(performance.now() - t);
    step.finish();
    progress.log(`  ${opts.nodes} joined in ${joinMs} ms (${round(opts.nodes / (joinMs / 1000))}/s)`);

    // Each agent heartbeats from the moment it is connected, as a real one does.
    fleet.startHeartbeats();
    step = progress.step(`${opts.nodes} agents connect over MQTT`, opts.nodes * 2);
    t = performance.now();
    await fleet.connectAll(50, CONNECT_TIMEOUT_MS, (n) => step.tick(n * 2));
    const connectMs = Math.round(performance.now() - t);
    step.finish();
    progress.log(`  ${opts.nodes} connected in ${connectMs} ms; control RSS ${round(control.rssMb())} MB`);

    step = progress.step(`heartbeats at ${opts.hz} Hz settle`, opts.settleMs);
    await waitWithProgress(opts.settleMs, step.tick);
    step.finish();
    // Every agent heartbeats from its connect on: none should have been declared down.
    const setupDowns = (await api.events(setupCursor, 'node.down')).events.length;
    if (setupDowns > 0) progress.log(`  warning: ${setupDowns} nodes were declared down while the fleet joined and connected`);
    const steady = await measureSteady(ctx, `steady state: ${opts.nodes} nodes x ${opts.hz} Hz`, opts.steadyMs);
    if (!control.running) throw new Error(control.describeExit());

    const deployed = await deploy(ctx);
    const withReplicas = deployed.all_ready_ms === null ? undefined
      : await measureSteady(ctx, `steady state with ${opts.replicas} replicas in the heartbeats`, Math.min(opts.steadyMs, 10_000));

    const victims = fleet.liveAgents();
    const killed = await detectFailures(ctx, `kill ${opts.kills} agents (TCP reset), one every ${opts.gapMs} ms`, victims.slice(0, opts.kills), async (a) => fleet.kill(a));
    const hung = await detectFailures(ctx, `hang ${opts.hung} agents (silent, connection open), one every ${opts.gapMs} ms`, victims.slice(opts.kills, opts.kills + opts.hung), (a) => hang(a, opts.hz));
    for (const a of victims.slice(opts.kills, opts.kills + opts.hung)) fleet.kill(a);

    machine.load_average_at_end = loadAverage();
    const p = (v: number[], q: number) => { const x = percentile(v, q); return x === null ? null : Math.round(x); };
    const partial = {
      nodes: opts.nodes,
      heartbeat_hz: opts.hz,
      control_cpu_percent: steady.control_cpu_percent,
      control_rss_mb: steady.control_rss_mb,
      replicas: opts.replicas,
      schedule_1000_replicas_ms: deployed.schedule_ms,
      all_ready_ms: deployed.all_ready_ms,
      failure_detect_ms_p50: p(killed.detect_ms, 0.5),
      failure_detect_ms_max: p(killed.detect_ms, 1),
      hung_detect_ms_p50: p(hung.detect_ms, 0.5),
      hung_detect_ms_max: p(hung.detect_ms, 1),
    };
    return {
      ...partial,
      machine,
      date,
      targets: evaluateTargets(partial, { failures: killed.missed.length, hung: hung.missed.length }),
      details: {
        setup: { join_ms: joinMs, connect_ms: connectMs, join_concurrency: opts.joinConcurrency, control_peak_rss_mb: round(control.peakRssMb()), nodes_down_during_setup: setupDowns },
        steady,
        deploy: { deployments: opts.deployments, replica_start_ms: opts.replicaStartMs, ...deployed },
        steady_with_replicas: withReplicas,
        failures: { kills: opts.kills, gap_ms: opts.gapMs, ...killed },
        hung: { agents: opts.hung, gap_ms: opts.gapMs, heartbeat_timeout_ms: opts.heartbeatTimeoutMs ?? 'control default (2500)', ...hung },
        agents: { ...fleet.counters },
      },
      notes: [
        'control plane: startControlPlane in a child process (SQLite in a temporary directory, embedded aedes broker, default log level writing to a file); simulated agents: this process, real agent MQTT sessions (connectAgentLink) on 127.0.0.1.',
        'control_cpu_percent: (utime + stime) of the control process from /proc over the wall time of the steady window, 100 = one core; control_rss_mb: largest VmRSS sampled each second in the window.',
        'schedule_1000_replicas_ms: from sending POST /deployments until GET /api/v1/deployments counts every replica placed (polled every 20 ms); all_ready_ms: until it counts every replica ready as reported by the agents (polled every 50 ms).',
        'failure_detect_ms: from resetting an agent\'s TCP connection to the timestamp of its node.down event in the control\'s event log (same clock); hung_detect_ms: from a hung agent\'s last heartbeat to that event.',
        'bench, other: CPU of this process (the simulated agents) and of every other process on the machine during the steady window; 2 cores are shared by all.',
      ],
    };
  } finally {
    await fleet.close().catch(() => undefined);
    await api.close().catch(() => undefined);
    await control.stop();
  }
}

async function main(): Promise<void> {
  const opts = optionsOrExit('bench:fleet', () => parseOptions(process.argv.slice(2)));
  const tmp = await mkdtemp(path.join(os.tmpdir(), 'tern-fleet-bench-'));
  if (!opts.keep && !opts.profile) removeWorkDir = () => rmSync(tmp, { recursive: true, force: true });
  const totalMs = 2000 + opts.nodes * 7 + opts.settleMs + opts.steadyMs + 5000 + Math.min(opts.steadyMs, 10_000)
    + (opts.kills + opts.hung) * opts.gapMs + 6000;
  const progress = new BenchProgress(totalMs, 9);
  process.stderr.write(`fleet bench: ${opts.nodes} simulated agents at ${opts.hz} Hz, ${opts.replicas} replicas, ${opts.kills} kills, ${opts.hung} hung; `
    + `load average ${loadAverage().join(' ')} on ${os.cpus().length} cores; working directory ${tmp}\n`);
  let ok = false;
  try {
    const results = await run(opts, tmp, progress);
    progress.stop();
    const file = await writeResults(opts.out, results);
    process.stdout.write(renderTable(results));
    process.stdout.write(`\nwrote ${path.relative(process.cwd(), file)}\n`);
    ok = true;
  } finally {
    progress.stop();
    if (opts.keep || opts.profile || !ok) process.stderr.write(`kept ${tmp} (control plane data, control.log${opts.profile ? ', profile/' : ''})\n`);
    else await rm(tmp, { recursive: true, force: true });
  }
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`\n${signal}: stopping the control plane\n`);
    killAllControlProcesses();
    // The child is gone (SIGKILL); its files can go too.
    setTimeout(() => {
      removeWorkDir?.();
      process.exit(130);
    }, 200);
  });
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`fleet bench failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  killAllControlProcesses();
  process.exit(1);
});
