/**
 * The edge-vs-cloud experiment: for each model and site, one deployment
 * placed on that site's nodes (selector site=...), scaled through the
 * replica counts; at each, closed-loop load for each user count through the
 * client's gateway (tern bench load). Then the cache experiment: the random
 * forest (as in the study) and the heavy model, with and without a
 * prediction cache, 1 user, 1 replica, per site.
 * Deployments are removed after their cells, so sites never serve two models
 * at once.
 */
import type { BenchProtocol, ExperimentCell, ExperimentReport } from '../../protocol/bench.js';
import type { HostStatsSource } from '../host-stats.js';
import { runLoadBench, prepareInputs } from '../load-bench.js';
import { loadAverage, machineInfo } from '../machine-info.js';
import type { BenchProgress } from '../progress.js';
import type { FleetDriver } from './fleet-driver.js';
import { judgeFindings } from './findings.js';

export const HEAVY_MODELS = ['synthetic-large', 'ocr-det', 'synthetic-medium'];
export const CACHE_MODEL = 'iris-forest';
const CACHE_BYTES = 8 * 2 ** 20;

export interface ExperimentOptions {
  driver: FleetDriver;
  /** The gateway the load goes to (HTTP base URL); gRPC on its port + 1. */
  target: string;
  protocol: BenchProtocol;
  models: string[];
  users: number[];
  replicas: number[];
  sites: string[];
  warmupMs: number;
  durationMs: number;
  cache: boolean;
  /** Model repository the models are pushed from. */
  repository: string;
  hostStats: (site: string) => HostStatsSource | undefined;
  /** The node whose gateway takes the load (waited on until it routes to every replica). */
  isGatewayNode: (n: { facts: { address: string }; labels: Record<string, string> }) => boolean;
  environment: ExperimentReport['environment'];
  progress?: BenchProgress;
  log: (line: string) => void;
}

export function cellCount(o: Pick<ExperimentOptions, 'models' | 'users' | 'replicas' | 'sites' | 'cache'>): number {
  return o.models.length * o.sites.length * o.replicas.length * o.users.length + (o.cache ? 2 * o.sites.length * cacheModels(o.models).length : 0);
}

const deploymentName = (model: string, site: string, suffix = '') => `evc-${model}-${site}${suffix}`.slice(0, 63);

export function heavyModel(models: string[]): string {
  return models.find((m) => HEAVY_MODELS.includes(m)) ?? models[0];
}

/** The study's cached model, and the heavy one: a cache can only help where computing costs more than the request. */
export function cacheModels(models: string[]): string[] {
  return [...new Set([CACHE_MODEL, heavyModel(models)])];
}

async function pushModels(o: ExperimentOptions): Promise<void> {
  for (const model of o.models) await o.driver.pushModel(o.repository, model, model, '1');
  if (!o.cache) return;
  for (const model of cacheModels(o.models)) {
    await o.driver.pushModel(o.repository, model, `${model}-cached`, '1', { cache: { max_bytes: CACHE_BYTES } });
    if (!o.models.includes(model)) await o.driver.pushModel(o.repository, model, model, '1');
  }
}

/** Loads one deployment at each user count; cells carry what was measured and where. */
async function measure(o: ExperimentOptions, name: string, site: string, users: number[], cell: Omit<ExperimentCell, keyof import('../../protocol/bench.js').LoadStep | 'site'>): Promise<ExperimentCell[]> {
  const prepared = await prepareInputs({ target: o.target, model: name, inputs: 'dataset' });
  const report = await runLoadBench({
    target: o.target, model: name, protocol: o.protocol, users, warmupMs: o.warmupMs, durationMs: o.durationMs,
    inputs: 'dataset', hostStats: o.hostStats(site), progress: o.progress,
  }, prepared);
  return report.steps.map((s) => ({ ...s, ...cell, site }));
}

async function runMatrix(o: ExperimentOptions, cells: ExperimentCell[]): Promise<void> {
  for (const model of o.models) {
    for (const site of o.sites) {
      const name = deploymentName(model, site);
      await o.driver.remove(name);
      const [first, ...rest] = o.replicas;
      await o.driver.deploy(name, model, '1', site, first);
      for (const replicas of [first, ...rest]) {
        if (replicas !== first) await o.driver.scale(name, replicas);
        await o.driver.waitRoutable(name, replicas, o.isGatewayNode);
        o.log(`${model} on ${site}, ${replicas} replica(s): routable`);
        cells.push(...await measure(o, name, site, o.users, { experiment: 'matrix', model, replicas, cache: false }));
      }
      await o.driver.remove(name);
    }
  }
}

async function runCache(o: ExperimentOptions, cells: ExperimentCell[]): Promise<void> {
  for (const model of cacheModels(o.models)) {
    for (const site of o.sites) {
      for (const cache of [false, true]) {
        const name = deploymentName(model, site, cache ? '-cache' : '-nocache');
        await o.driver.remove(name);
        await o.driver.deploy(name, cache ? `${model}-cached` : model, '1', site, 1);
        await o.driver.waitRoutable(name, 1, o.isGatewayNode);
        cells.push(...await measure(o, name, site, [1], { experiment: 'cache', model, replicas: 1, cache }));
        await o.driver.remove(name);
      }
    }
  }
}

export async function runEdgeVsCloud(o: ExperimentOptions): Promise<ExperimentReport> {
  const started = new Date().toISOString();
  const machine = machineInfo();
  await pushModels(o);
  const cells: ExperimentCell[] = [];
  await runMatrix(o, cells);
  if (o.cache) await runCache(o, cells);
  const heavy = heavyModel(o.models);
  return {
    kind: 'tern-bench-experiment', experiment: 'edge-vs-cloud', started_at: started, finished_at: new Date().toISOString(),
    environment: o.environment,
    settings: {
      models: o.models, users: o.users, replicas: o.replicas, sites: o.sites,
      warmup_s: o.warmupMs / 1000, duration_s: o.durationMs / 1000, cache: o.cache,
    },
    machine: { ...machine, load_average_at_end: loadAverage() },
    cells,
    findings: judgeFindings(cells, heavy, o.users),
  };
}
