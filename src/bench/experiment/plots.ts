/**
 * The experiment's plots: Vega-Lite specs compiled and rendered to SVG by
 * Vega in Node (no browser), then to PNG by sharp. One figure per metric
 * (throughput, p50, p99) against users, one panel per model, a line per site
 * and replica count; and one bar chart for the cache experiment.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import type { ExperimentCell } from '../../protocol/bench.js';

const METRICS = [
  { file: 'throughput', field: 'throughput_rps', title: 'throughput (req/s)' },
  { file: 'p50', field: 'p50_ms', title: 'p50 latency (ms)' },
  { file: 'p99', field: 'p99_ms', title: 'p99 latency (ms)' },
] as const;

const SITE_COLORS = { domain: ['edge', 'cloud'], range: ['#d95f02', '#1b9e77'] };

function metricSpec(cells: ExperimentCell[], metric: (typeof METRICS)[number], title: string): TopLevelSpec {
  const data = cells.filter((c) => c.experiment === 'matrix').map((c) => ({
    model: c.model, site: c.site, users: c.users, replicas: `${c.replicas} replica${c.replicas === 1 ? '' : 's'}`, value: c[metric.field],
  }));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${title}: ${metric.title} vs users`, anchor: 'start' },
    data: { values: data },
    facet: { column: { field: 'model', type: 'nominal', title: null } },
    spec: {
      width: 220,
      height: 180,
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'users', type: 'quantitative', title: 'users', axis: { tickMinStep: 1 } },
        y: { field: 'value', type: 'quantitative', title: metric.title, scale: { zero: metric.file === 'throughput' } },
        color: { field: 'site', type: 'nominal', scale: SITE_COLORS, title: 'site' },
        strokeDash: { field: 'replicas', type: 'nominal', title: 'replicas', legend: { symbolType: 'stroke', symbolStrokeWidth: 2, symbolSize: 300 } },
        detail: { field: 'replicas' },
      },
    },
    resolve: { scale: { y: 'independent' } },
    config: { font: 'DejaVu Sans', background: 'white' },
  };
}

function cacheSpec(cells: ExperimentCell[], title: string): TopLevelSpec {
  const data = cells.filter((c) => c.experiment === 'cache').map((c) => ({ model: c.model, site: c.site, cache: c.cache ? 'cache on' : 'cache off', value: c.throughput_rps }));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `${title}: prediction cache, throughput (req/s), 1 user, 1 replica`, anchor: 'start' },
    data: { values: data },
    facet: { column: { field: 'model', type: 'nominal', title: null } },
    spec: {
      width: 200,
      height: 180,
      mark: 'bar',
      encoding: {
        x: { field: 'site', type: 'nominal', title: null, sort: ['edge', 'cloud'] },
        xOffset: { field: 'cache', type: 'nominal' },
        y: { field: 'value', type: 'quantitative', title: 'throughput (req/s)' },
        color: { field: 'cache', type: 'nominal', title: null },
      },
    },
    resolve: { scale: { y: 'independent' } },
    config: { font: 'DejaVu Sans', background: 'white' },
  };
}

/**
 * Vega-Lite draws a line-with-points legend with a transparent stroke, which
 * leaves the dash legend blank: give dash symbols a visible stroke.
 */
function strokeDashLegends(spec: vega.Spec): vega.Spec {
  for (const legend of spec.legends ?? []) {
    const update = legend.encode?.symbols?.update as Record<string, unknown> | undefined;
    if (legend.strokeDash && update) update.stroke = { value: '#444' };
  }
  return spec;
}

export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(strokeDashLegends(compile(spec).spec)), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** Writes <name>.svg and <name>.png (and <name>.vl.json, the spec) for every plot; returns the file names. */
export async function writePlots(dir: string, cells: ExperimentCell[], title: string): Promise<string[]> {
  const specs: [string, TopLevelSpec][] = METRICS.map((m) => [m.file, metricSpec(cells, m, title)]);
  if (cells.some((c) => c.experiment === 'cache')) specs.push(['cache', cacheSpec(cells, title)]);
  const written: string[] = [];
  for (const [name, spec] of specs) {
    const svg = await renderSvg(spec);
    await writeFile(path.join(dir, `${name}.svg`), svg);
    await sharp(Buffer.from(svg), { density: 144 }).png().toFile(path.join(dir, `${name}.png`));
    await writeFile(path.join(dir, `${name}.vl.json`), `${JSON.stringify(spec, null, 2)}\n`);
    written.push(`${name}.svg`, `${name}.png`, `${name}.vl.json`);
  }
  return written;
}
