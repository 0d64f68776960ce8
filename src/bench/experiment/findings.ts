/**
 * The three findings of the edge-vs-cloud serving studies, judged from a run's
 * cells: (1) the edge serves light models to few users better, (2) the cloud
 * serves the heavy CNN to more users better, (3) a prediction cache helps the
 * edge more than the cloud. Each gets reproduced true/false, or null when the
 * run lacks the cells, with the figures that decided it.
 */
import type { ExperimentCell, Finding } from '../../protocol/bench.js';

const f1 = (v: number) => v.toFixed(1);
/** Cache gains below this are noise on a shared 2-core machine (repeated cells differ by up to ~10%). */
const MEANINGFUL_GAIN = 1.1;

function cell(cells: ExperimentCell[], q: Partial<ExperimentCell>): ExperimentCell | undefined {
  return cells.find((c) => Object.entries(q).every(([k, v]) => c[k as keyof ExperimentCell] === v));
}

/** The site's best throughput for a model at a user count, over its replica counts. */
function best(cells: ExperimentCell[], model: string, site: string, users: number): ExperimentCell | undefined {
  return cells.filter((c) => c.experiment === 'matrix' && c.model === model && c.site === site && c.users === users)
    .sort((a, b) => b.throughput_rps - a.throughput_rps)[0];
}

function lightModels(cells: ExperimentCell[], heavy: string): string[] {
  return [...new Set(cells.filter((c) => c.experiment === 'matrix' && c.model !== heavy).map((c) => c.model))];
}

function edgeBetterForLight(cells: ExperimentCell[], heavy: string, fewUsers: number): Finding {
  const finding = `edge better for light models and few users (${fewUsers} user${fewUsers === 1 ? '' : 's'}, 1 replica: lower p50 and higher throughput)`;
  const parts: string[] = [];
  let verdict: boolean | null = null;
  for (const model of lightModels(cells, heavy)) {
    const e = cell(cells, { experiment: 'matrix', model, site: 'edge', users: fewUsers, replicas: 1 });
    const c = cell(cells, { experiment: 'matrix', model, site: 'cloud', users: fewUsers, replicas: 1 });
    if (!e || !c) continue;
    const ok = e.p50_ms < c.p50_ms && e.throughput_rps > c.throughput_rps;
    verdict = (verdict ?? true) && ok;
    parts.push(`${model}: edge p50 ${f1(e.p50_ms)} ms / ${f1(e.throughput_rps)} req/s vs cloud ${f1(c.p50_ms)} ms / ${f1(c.throughput_rps)} req/s`);
  }
  return { finding, reproduced: verdict, evidence: parts.join('; ') || 'no light model measured on both sites' };
}

function cloudBetterForHeavy(cells: ExperimentCell[], heavy: string, manyUsers: number): Finding {
  const finding = `cloud better for the heavy CNN (${heavy}) under more users (${manyUsers} users, best replica count per site)`;
  const e = best(cells, heavy, 'edge', manyUsers);
  const c = best(cells, heavy, 'cloud', manyUsers);
  if (!e || !c) return { finding, reproduced: null, evidence: `${heavy} was not measured at ${manyUsers} users on both sites` };
  return {
    finding,
    reproduced: c.throughput_rps > e.throughput_rps,
    evidence: `cloud ${f1(c.throughput_rps)} req/s (p99 ${f1(c.p99_ms)} ms, ${c.replicas} replicas) vs edge ${f1(e.throughput_rps)} req/s (p99 ${f1(e.p99_ms)} ms, ${e.replicas} replicas)`,
  };
}

/** Throughput with the cache over without, per site, for one model. */
function cacheGains(cells: ExperimentCell[], model: string) {
  const gain = (site: string) => {
    const on = cell(cells, { experiment: 'cache', model, site, cache: true });
    const off = cell(cells, { experiment: 'cache', model, site, cache: false });
    return on && off && off.throughput_rps > 0 ? { x: on.throughput_rps / off.throughput_rps, on, off } : undefined;
  };
  const e = gain('edge');
  const c = gain('cloud');
  if (!e || !c) return undefined;
  const text = (g: NonNullable<typeof e>) => `x${g.x.toFixed(2)} (${f1(g.off.throughput_rps)} -> ${f1(g.on.throughput_rps)} req/s, p50 ${f1(g.off.p50_ms)} -> ${f1(g.on.p50_ms)} ms)`;
  return { edge: e.x, cloud: c.x, evidence: `${model}: edge ${text(e)}, cloud ${text(c)}` };
}

/** Judged on the study's model (the random forest); other cached models are reported beside it. */
function cacheHelpsEdgeMost(cells: ExperimentCell[], studyModel: string): Finding {
  const finding = `the prediction cache helps the edge most (${studyModel}: throughput with cache / without, 1 user, 1 replica)`;
  const study = cacheGains(cells, studyModel);
  if (!study) return { finding, reproduced: null, evidence: 'the cache experiment did not run on both sites' };
  const others = [...new Set(cells.filter((c) => c.experiment === 'cache' && c.model !== studyModel).map((c) => c.model))]
    .map((m) => cacheGains(cells, m)?.evidence).filter(Boolean);
  return {
    finding,
    // A gain under 10% is within this testbed's run-to-run noise: it does not count as helping.
    reproduced: study.edge > study.cloud && study.edge >= MEANINGFUL_GAIN,
    evidence: [study.evidence, ...others.map((e) => `also measured: ${e}`)].join('; '),
  };
}

export function judgeFindings(cells: ExperimentCell[], heavy: string, users: number[], cacheStudyModel = 'iris-forest'): Finding[] {
  return [
    edgeBetterForLight(cells, heavy, Math.min(...users)),
    cloudBetterForHeavy(cells, heavy, Math.max(...users)),
    cacheHelpsEdgeMost(cells, cacheStudyModel),
  ];
}
