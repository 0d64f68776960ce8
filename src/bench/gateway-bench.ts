/**
 * `npm run bench:gateway`: what a gateway hop costs. One `tern serve` replica
 * and one gateway process (the one every agent runs) on this machine; the
 * same requests go straight to the replica and through the gateway, 1 and 32
 * closed-loop clients, for a CNN and for a microsecond model, over REST with
 * the binary extension and over gRPC. Over REST the same requests also go
 * through a bare buffering proxy (bare-proxy.ts): the price of any hop on this
 * machine, which tells the gateway's own cost apart from the hop's. Direct,
 * gateway and proxy windows alternate (rounds), and each figure is the median
 * of its rounds, so drift on a shared machine hits every side alike.
 *
 * Writes bench/results/gateway.json (headline fields direct_p50_ms,
 * gateway_p50_ms, direct_rps_c32, gateway_rps_c32 for the CNN over REST
 * binary) and gateway.md. Target: the gateway adds < 0.3 ms at p50 and keeps
 * >= 90% of direct throughput.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';
import { writeDemoRepository } from '../models/demo-repository.js';
import type { RoutingTable } from '../protocol/routing.js';
import { GATEWAY_OPTIONS_ENV, type GatewayChildOptions } from '../gateway/gateway-ipc.js';
import { ChildServer, freePort, stopAllChildren } from './child-servers.js';
import { runClosedLoop, type LatencySummary } from './load-generator.js';
import { machineInfo } from './machine-info.js';
import { buildInputs, fetchModelMetadata } from './model-inputs.js';
import { BenchProgress } from './progress.js';
import { GrpcChannel, grpcClient, restBinaryClient, type BenchClient } from './protocol-clients.js';
import { writeResults } from './report.js';
import { startCpuMeter } from './server-stats.js';
import { atMedian, median } from './median.js';
import { describeIdle, haltPollOption, setHaltPollForRun } from './halt-poll.js';
import { optionsOrExit } from './options.js';

const HOST = '127.0.0.1';
const MODELS = ['synthetic-medium', 'iris-logreg'] as const;
const PROTOCOLS = ['rest-binary', 'grpc'] as const;
const CLIENTS = [1, 32] as const;
type Protocol = (typeof PROTOCOLS)[number];
type Path = 'direct' | 'gateway' | 'proxy';
/** The bare proxy speaks HTTP only. */
const pathsFor = (protocol: Protocol): Path[] => (protocol === 'rest-binary' ? ['direct', 'gateway', 'proxy'] : ['direct', 'gateway']);

interface Cell {
  model: string;
  protocol: Protocol;
  clients: number;
  direct: LatencySummary;
  gateway: LatencySummary;
  /** gateway p50 - direct p50 (ms). */
  added_p50_ms: number;
  /** gateway rps / direct rps. */
  throughput_ratio: number;
  /** The bare proxy's figures (REST only): what the hop alone costs here. */
  proxy?: LatencySummary;
  proxy_added_p50_ms?: number;
  proxy_throughput_ratio?: number;
}

interface Endpoints {
  http: string;
  grpc: string;
}

function options() {
  const { values } = parseArgs({
    options: {
      out: { type: 'string', default: 'bench/results' },
      'window-ms': { type: 'string', default: '3000' },
      'warmup-ms': { type: 'string', default: '1000' },
      rounds: { type: 'string', default: '3' },
      'halt-poll-ns': { type: 'string' },
    },
  });
  const whole = (name: string, v: string, min: number) => {
    const n = Number(v);
    if (!/^[0-9]+$/.test(v) || n < min) throw new Error(`--${name} must be a whole number >= ${min}, got '${v}'`);
    return n;
  };
  return {
    out: values.out, windowMs: whole('window-ms', values['window-ms'], 100), warmupMs: whole('warmup-ms', values['warmup-ms'], 0), rounds: whole('rounds', values.rounds, 1),
    haltPollNs: haltPollOption(values['halt-poll-ns']),
  };
}

async function startReplica(repository: string): Promise<{ server: ChildServer; endpoints: Endpoints }> {
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  const server = await ChildServer.start({
    name: 'tern serve',
    script: fileURLToPath(new URL('../cli/main.js', import.meta.url)),
    args: ['serve', '--model-repository', repository, '--http-port', String(httpPort), '--grpc-port', String(grpcPort), '--host', HOST, '--no-watch'],
    env: { TERN_LOG_LEVEL: 'warn' },
    readyUrl: `http://${HOST}:${httpPort}/v2/health/ready`,
  });
  return { server, endpoints: { http: `http://${HOST}:${httpPort}`, grpc: `${HOST}:${grpcPort}` } };
}

/** The gateway process an agent runs, given its routing table through the cache file it reads at start. */
async function startGateway(dir: string, replica: Endpoints): Promise<{ server: ChildServer; endpoints: Endpoints }> {
  const [httpPort, grpcPort] = [await freePort(), await freePort()];
  const replicaPort = Number(new URL(replica.http).port);
  const table: RoutingTable = {
    version: 1, generated_at: Date.now(),
    routes: MODELS.map((model) => ({
      deployment: model, policy: { locality: 'local-first', hedge: false },
      replicas: [{ id: `${model}-r1`, node: 'bench', address: HOST, port: replicaPort, grpc_port: Number(replica.grpc.split(':')[1]), cloud: false, version: '1' }],
    })),
  };
  const cacheFile = path.join(dir, 'routes.json');
  await writeFile(cacheFile, JSON.stringify(table));
  const gatewayOptions: GatewayChildOptions = { host: HOST, httpPort, grpcPort, cacheFile, locale: { node: 'bench' }, logLevel: 'warn' };
  const server = await ChildServer.start({
    name: 'tern gateway',
    script: fileURLToPath(new URL('../gateway/gateway-child.js', import.meta.url)),
    args: [],
    env: { [GATEWAY_OPTIONS_ENV]: JSON.stringify(gatewayOptions) },
    readyUrl: `http://${HOST}:${httpPort}/v2/health/ready`,
  });
  return { server, endpoints: { http: `http://${HOST}:${httpPort}`, grpc: `${HOST}:${grpcPort}` } };
}

/** The bare proxy in front of the replica's HTTP port. */
async function startProxy(replica: Endpoints): Promise<{ server: ChildServer; endpoints: Endpoints }> {
  const port = await freePort();
  const server = await ChildServer.start({
    name: 'bare proxy',
    script: fileURLToPath(new URL('./bare-proxy.js', import.meta.url)),
    args: ['--upstream', replica.http, '--host', HOST, '--port', String(port)],
    readyUrl: `http://${HOST}:${port}/v2/health/ready`,
  });
  return { server, endpoints: { http: `http://${HOST}:${port}`, grpc: '' } };
}

class Clients {
  private readonly pools = new Map<string, Pool>();
  private readonly channels = new Map<string, GrpcChannel>();

  async client(ep: Endpoints, protocol: Protocol, model: string, replicaHttp: string): Promise<BenchClient> {
    const meta = await fetchModelMetadata(replicaHttp, model);
    const inputs = buildInputs(meta, 1);
    if (protocol === 'grpc') {
      let ch = this.channels.get(ep.grpc);
      if (!ch) this.channels.set(ep.grpc, ch = new GrpcChannel(ep.grpc));
      return grpcClient(ch, model, inputs);
    }
    let pool = this.pools.get(ep.http);
    if (!pool) this.pools.set(ep.http, pool = new Pool(ep.http, { connections: 64, pipelining: 1 }));
    return restBinaryClient(pool, model, inputs);
  }

  async close(): Promise<void> {
    for (const c of this.channels.values()) c.close();
    await Promise.all([...this.pools.values()].map((p) => p.close()));
  }
}

function renderMarkdown(cells: Cell[], headline: Cell, rounds: number, windowMs: number, idleLine: string): string {
  const proxyCells = (c: Cell) => (c.proxy ? `${c.proxy_added_p50_ms!.toFixed(3)} | ${(c.proxy_throughput_ratio! * 100).toFixed(1)}%` : '- | -');
  const row = (c: Cell) => `| ${c.model} | ${c.protocol} | ${c.clients} | ${c.direct.p50Ms.toFixed(3)} | ${c.gateway.p50Ms.toFixed(3)} | ${c.added_p50_ms.toFixed(3)} | ${c.direct.p99Ms.toFixed(2)} | ${c.gateway.p99Ms.toFixed(2)} | ${c.direct.rps.toFixed(0)} | ${c.gateway.rps.toFixed(0)} | ${(c.throughput_ratio * 100).toFixed(1)}% | ${proxyCells(c)} |`;
  const p50Ok = headline.added_p50_ms < 0.3;
  const rpsOk = headline.throughput_ratio >= 0.9;
  return [
    '# Gateway overhead',
    '',
    `Direct to a replica vs through the gateway on the same machine; median of ${rounds} alternating rounds of ${windowMs / 1000} s each.`,
    '',
    idleLine,
    '',
    '| model | protocol | clients | direct p50 ms | gateway p50 ms | added p50 ms | direct p99 ms | gateway p99 ms | direct rps | gateway rps | gateway / direct | bare proxy added p50 ms | bare proxy / direct |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...cells.map(row),
    '',
    'bare proxy: a node:http server that buffers each request, forwards it to the replica over a keep-alive undici Pool and buffers the answer back (bare-proxy.ts): no routing, retries, deadlines, metrics or logs. What it adds is the price of one hop on this machine; the gateway adds that and its own work.',
    '',
    `Targets (${headline.model}, ${headline.protocol}): added p50 < 0.3 ms: ${headline.added_p50_ms.toFixed(3)} ms at 1 client — ${p50Ok ? 'met' : 'NOT met'}; `
      + `throughput >= 90% of direct at 32 clients: ${(headline.throughput_ratio * 100).toFixed(1)}% — ${rpsOk ? 'met' : 'NOT met'}.`,
    '',
    ...(headline.proxy
      ? [`On this machine the bare proxy alone adds ${headline.proxy_added_p50_ms!.toFixed(3)} ms at 1 client and keeps ${(headline.proxy_throughput_ratio! * 100).toFixed(1)}% at 32 clients; `
        + `the gateway's own share of the added p50 is ${(headline.added_p50_ms - headline.proxy_added_p50_ms!).toFixed(3)} ms.`, '']
      : []),
  ].join('\n');
}

async function main(): Promise<void> {
  const opts = optionsOrExit('bench:gateway', () => {
    const o = options();
    if (o.haltPollNs !== undefined) setHaltPollForRun(o.haltPollNs);
    return o;
  });
  const machine = machineInfo();
  const idleLine = `Idle vCPUs: ${describeIdle(machine.idle, opts.haltPollNs !== undefined)}.`;
  const dir = await mkdtemp(path.join(tmpdir(), 'tern-gateway-bench-'));
  const clients = new Clients();
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void stopAllChildren().finally(() => process.exit(130)));
  try {
    await writeDemoRepository(path.join(dir, 'repo'), { models: [...MODELS] });
    const replica = await startReplica(path.join(dir, 'repo'));
    const gateway = await startGateway(dir, replica.endpoints);
    const proxy = await startProxy(replica.endpoints);
    const endpoints: Record<Path, Endpoints> = { direct: replica.endpoints, gateway: gateway.endpoints, proxy: proxy.endpoints };
    // The replica's, the gateway's and the proxy's own CPU is the work being measured, not noise.
    const measuredPids = [replica, gateway, proxy].map((c) => c.server.pid).filter((pid): pid is number => pid !== undefined);
    const cells: Cell[] = [];
    const steps = MODELS.length * CLIENTS.length * opts.rounds * PROTOCOLS.reduce((n, p) => n + pathsFor(p).length, 0);
    const progress = new BenchProgress(steps * (opts.windowMs + opts.warmupMs), steps);
    for (const model of MODELS) {
      for (const protocol of PROTOCOLS) {
        const paths = pathsFor(protocol);
        const send = {} as Record<Path, BenchClient>;
        for (const p of paths) send[p] = await clients.client(endpoints[p], protocol, model, replica.endpoints.http);
        for (const p of paths) await send[p].verify(); // every path answers correctly before anything is timed
        for (const n of CLIENTS) {
          const runs: Record<Path, LatencySummary[]> = { direct: [], gateway: [], proxy: [] };
          for (let round = 0; round < opts.rounds; round++) {
            for (const p of paths) {
              const step = progress.step(`${model} ${protocol} c${n} ${p} (round ${round + 1})`, opts.windowMs + opts.warmupMs);
              const cpu = startCpuMeter(measuredPids);
              const summary = await runClosedLoop({ concurrency: n, warmupMs: opts.warmupMs, durationMs: opts.windowMs, send: () => send[p].send(), onProgress: step.tick });
              if (summary.errors > 0) throw new Error(`${p} ${model} ${protocol}: ${summary.errors} errors, first: ${summary.firstError}`);
              const other = cpu().otherCores ?? 0;
              if (other > 0.25) progress.log(`note: ${other.toFixed(2)} cores busy in other processes during ${p} ${model} c${n}: figures are noisy`);
              runs[p].push(summary);
              step.finish();
            }
          }
          const key = n === 1 ? 'p50Ms' : 'rps';
          const medianP50 = (p: Path) => median(runs[p].map((r) => r.p50Ms));
          const medianRps = (p: Path) => median(runs[p].map((r) => r.rps));
          cells.push({
            model, protocol, clients: n,
            direct: atMedian(runs.direct, (r) => r[key]),
            gateway: atMedian(runs.gateway, (r) => r[key]),
            added_p50_ms: medianP50('gateway') - medianP50('direct'),
            throughput_ratio: medianRps('gateway') / medianRps('direct'),
            ...(runs.proxy.length > 0
              ? { proxy: atMedian(runs.proxy, (r) => r[key]), proxy_added_p50_ms: medianP50('proxy') - medianP50('direct'), proxy_throughput_ratio: medianRps('proxy') / medianRps('direct') }
              : {}),
          });
        }
      }
    }
    progress.stop();
    const at = (clientsN: number) => cells.find((c) => c.model === MODELS[0] && c.protocol === 'rest-binary' && c.clients === clientsN)!;
    const c1 = at(1);
    const c32 = at(32);
    const headline = { ...c1, throughput_ratio: c32.throughput_ratio, proxy_throughput_ratio: c32.proxy_throughput_ratio };
    const json = {
      direct_p50_ms: c1.direct.p50Ms, gateway_p50_ms: c1.gateway.p50Ms,
      direct_rps_c32: c32.direct.rps, gateway_rps_c32: c32.gateway.rps,
      headline: {
        model: MODELS[0], protocol: 'rest-binary', added_p50_ms: c1.added_p50_ms, throughput_ratio_c32: c32.throughput_ratio,
        bare_proxy_added_p50_ms: c1.proxy_added_p50_ms ?? null, bare_proxy_throughput_ratio_c32: c32.proxy_throughput_ratio ?? null,
      },
      targets: { added_p50_ms_below: 0.3, throughput_ratio_at_least: 0.9, p50_met: c1.added_p50_ms < 0.3, throughput_met: c32.throughput_ratio >= 0.9 },
      settings: { window_ms: opts.windowMs, warmup_ms: opts.warmupMs, rounds: opts.rounds, halt_poll_ns_set: opts.haltPollNs ?? null },
      machine, cells,
    };
    const files = await writeResults(opts.out, { json, markdown: renderMarkdown(cells, headline, opts.rounds, opts.windowMs, idleLine) }, 'gateway');
    process.stdout.write(`${renderMarkdown(cells, headline, opts.rounds, opts.windowMs, idleLine)}\nwrote ${files.json} and ${files.markdown}\n`);
    await proxy.server.stop();
    await replica.server.stop();
    await gateway.server.stop();
  } finally {
    await clients.close();
    await stopAllChildren();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench:gateway failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
