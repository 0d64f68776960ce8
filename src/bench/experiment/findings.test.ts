import { describe, expect, it } from 'vitest';
import type { ExperimentCell } from '../../protocol/bench.js';
import { judgeFindings } from './findings.js';
import { renderSvg } from './plots.js';

/** A cell with the figures that matter to the judgement; the rest are plausible fillers. */
function cell(q: Partial<ExperimentCell> & Pick<ExperimentCell, 'model' | 'site' | 'throughput_rps' | 'p50_ms'>): ExperimentCell {
  return {
    experiment: 'matrix', replicas: 1, users: 1, cache: false, mode: 'closed', requests: 100, errors: 0, errors_by_kind: {},
    seconds: 5, mean_ms: q.p50_ms, stdev_ms: 1, p90_ms: q.p50_ms, p99_ms: q.p50_ms * 2, max_ms: q.p50_ms * 3, hosts: [], ...q,
  };
}

const cells: ExperimentCell[] = [
  cell({ model: 'iris-logreg', site: 'edge', throughput_rps: 200, p50_ms: 3 }),
  cell({ model: 'iris-logreg', site: 'cloud', throughput_rps: 23, p50_ms: 43 }),
  cell({ model: 'synthetic-large', site: 'edge', users: 4, replicas: 1, throughput_rps: 10, p50_ms: 300 }),
  cell({ model: 'synthetic-large', site: 'edge', users: 4, replicas: 4, throughput_rps: 12, p50_ms: 320 }),
  cell({ model: 'synthetic-large', site: 'cloud', users: 4, replicas: 4, throughput_rps: 15, p50_ms: 250 }),
  cell({ experiment: 'cache', model: 'iris-forest', site: 'edge', throughput_rps: 100, p50_ms: 5 }),
  cell({ experiment: 'cache', model: 'iris-forest', site: 'edge', cache: true, throughput_rps: 150, p50_ms: 3 }),
  cell({ experiment: 'cache', model: 'iris-forest', site: 'cloud', throughput_rps: 23, p50_ms: 43 }),
  cell({ experiment: 'cache', model: 'iris-forest', site: 'cloud', cache: true, throughput_rps: 23.5, p50_ms: 42.5 }),
];

describe('edge-vs-cloud findings', () => {
  it('judges each finding from the cells that decide it, with the figures as evidence', () => {
    const [light, heavy, cache] = judgeFindings(cells, 'synthetic-large', [1, 2, 4]);
    expect(light).toMatchObject({ reproduced: true });
    expect(light.evidence).toContain('iris-logreg: edge p50 3.0 ms / 200.0 req/s vs cloud 43.0 ms / 23.0 req/s');
    expect(heavy).toMatchObject({ reproduced: true });
    expect(heavy.evidence).toContain('cloud 15.0 req/s');
    expect(heavy.evidence).toContain('edge 12.0 req/s (p99 640.0 ms, 4 replicas)'); // the edge's best replica count
    expect(cache).toMatchObject({ reproduced: true });
    expect(cache.evidence).toContain('edge x1.50');
  });

  it('says not reproduced when the figures go the other way, and not judged when cells are missing', () => {
    const flipped = cells.map((c) => (c.model === 'synthetic-large' && c.site === 'edge' ? { ...c, throughput_rps: 40 } : c));
    expect(judgeFindings(flipped, 'synthetic-large', [1, 4])[1].reproduced).toBe(false);
    const noCache = cells.filter((c) => c.experiment !== 'cache');
    expect(judgeFindings(noCache, 'synthetic-large', [1, 4])[2]).toMatchObject({ reproduced: null, evidence: 'the cache experiment did not run on both sites' });
  });

  it('renders a Vega-Lite spec to SVG in Node', async () => {
    const svg = await renderSvg({ data: { values: [{ a: 1, b: 2 }, { a: 2, b: 3 }] }, mark: 'line', encoding: { x: { field: 'a', type: 'quantitative' }, y: { field: 'b', type: 'quantitative' } } });
    expect(svg).toMatch(/^<svg[\s\S]*<path[\s\S]*<\/svg>$/);
  });
});
