/** The experiment's Markdown report: where it ran, how long each cell lasted, the findings, every cell, the plots. */
import type { ExperimentCell, ExperimentReport } from '../../protocol/bench.js';

const f = (v: number | null | undefined, d = 1) => (v === null || v === undefined ? '-' : v.toFixed(d));

function verdict(r: boolean | null): string {
  return r === null ? 'not judged' : r ? '**reproduced**' : '**not reproduced**';
}

function cellRow(c: ExperimentCell): string {
  const hosts = c.hosts.map((h) => `${h.host} ${f(h.cpu_percent_mean, 0)}%/${f(h.memory_mb_max, 0)} MB`).join(', ') || '-';
  const errors = c.errors ? `${c.errors} (${Object.entries(c.errors_by_kind).map(([k, n]) => `${k} ${n}`).join(', ')})` : '0';
  return `| ${c.model}${c.experiment === 'cache' ? (c.cache ? ' (cache on)' : ' (cache off)') : ''} | ${c.site} | ${c.replicas} | ${c.users} | ${f(c.throughput_rps)} | ${f(c.mean_ms, 2)} | ${f(c.p50_ms, 2)} | ${f(c.p99_ms, 2)} | ${errors} | ${hosts} |`;
}

export function renderExperimentMarkdown(r: ExperimentReport, plots: string[]): string {
  const s = r.settings;
  const cellSeconds = s.warmup_s + s.duration_s;
  const minutes = (Date.parse(r.finished_at) - Date.parse(r.started_at)) / 60_000;
  const svgs = plots.filter((p) => p.endsWith('.svg'));
  const cached = [...new Set(r.cells.filter((c) => c.experiment === 'cache').map((c) => c.model))];
  return [
    '# tern bench experiment edge-vs-cloud',
    '',
    `Ran ${r.started_at} to ${r.finished_at} (${minutes.toFixed(1)} min) on a ${r.environment.mode === 'lab' ? 'tern lab' : 'real fleet'}: control plane ${r.environment.control}, load sent to the gateway ${r.environment.target} over ${r.environment.protocol}.`,
    ...(r.environment.hosts.length ? ['', 'Hosts:', ...r.environment.hosts.map((h) => `- ${h}`)] : []),
    ...(r.environment.links.length ? ['', `Links (${r.environment.shaping ?? ''}):`, ...r.environment.links.map((l) => `- ${l}`)] : []),
    '',
    `Matrix: models ${s.models.join(', ')} x users ${s.users.join(', ')} x replicas ${s.replicas.join(', ')} x sites ${s.sites.join(', ')}${s.cache ? `, plus the cache experiment (${cached.join(' and ')}, 1 user, 1 replica, cache off/on, each site)` : ''}.`,
    `Each cell: ${s.warmup_s} s warm-up (excluded) + ${s.duration_s} s measured (${cellSeconds} s), closed-loop users, real inputs (iris rows, rendered text-line images), ${r.cells.length} cells.`,
    `Machine: ${String(r.machine.cpu_model)} x ${String(r.machine.cpu_count)}, load average ${JSON.stringify(r.machine.load_average_at_start)} at start, ${JSON.stringify(r.machine.load_average_at_end)} at end (every host, the client and the link proxies share these cores).`,
    '',
    '## Findings of the original study',
    '',
    ...r.findings.map((x) => `- ${verdict(x.reproduced)}: ${x.finding}. ${x.evidence}.`),
    '',
    '## Plots',
    '',
    ...svgs.map((p) => `![${p.replace('.svg', '')}](${p})`),
    '',
    '## Every cell',
    '',
    'Host CPU is the mean over the measured window in percent of one core (the host cgroup: agent, gateway, replicas), memory its maximum.',
    '',
    '| model | site | replicas | users | req/s | mean ms | p50 ms | p99 ms | errors | hosts CPU/memory |',
    '|---|---|---:|---:|---:|---:|---:|---:|---|---|',
    ...r.cells.map(cellRow),
    '',
  ].join('\n');
}
