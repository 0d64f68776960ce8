/**
 * `tern bench experiment edge-vs-cloud`: on a lab (the default; the command
 * re-runs itself inside the lab's client host so the load crosses the
 * emulated links) or on a real fleet (--control URL, --target gateway). Writes
 * results.json, report.md and the plots to --out.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ApiClient, loadCredentials } from '../../cli/api-client.js';
import type { ExperimentFlags } from '../../cli/bench-commands.js';
import { insideLabHost, rerunInHost } from '../../lab/reexec.js';
import { findLab, stateRoot } from '../../lab/state.js';
import { writeDemoRepository } from '../../models/demo-repository.js';
import { ExperimentReportSchema, type ExperimentReport } from '../../protocol/bench.js';
import type { LabState } from '../../protocol/lab.js';
import { controlPlaneSource, labHostSource } from '../host-stats.js';
import { BenchProgress } from '../progress.js';
import { cacheModels, cellCount, heavyModel, runEdgeVsCloud, type ExperimentOptions } from './edge-vs-cloud.js';
import { judgeFindings } from './findings.js';
import { renderExperimentMarkdown } from './experiment-report.js';
import { FleetDriver } from './fleet-driver.js';
import { writePlots } from './plots.js';

type Setup = Pick<ExperimentOptions, 'driver' | 'target' | 'hostStats' | 'isGatewayNode' | 'environment'>;

function describeLab(state: LabState): { hosts: string[]; links: string[] } {
  return {
    hosts: state.hosts.map((h) => `${h.name} (${h.address}${h.site ? `, site ${h.site}` : ''}): ${h.cpu !== undefined ? `${h.cpu} core quota` : 'no CPU limit'}, ${h.memory_mb !== undefined ? `${h.memory_mb} MiB` : 'no memory limit'}`),
    links: state.links.map((l) => `${l.between.join(' <-> ')}: ${l.delay_ms} ms one way (RTT ${2 * l.delay_ms} ms)${l.jitter_ms ? `, jitter ${l.jitter_ms} ms` : ''}${l.bandwidth_mbit ? `, ${l.bandwidth_mbit} Mbit/s each way` : ''}${l.loss_percent ? `, loss ${l.loss_percent}%` : ''}`),
  };
}

function labSetup(state: LabState, flags: ExperimentFlags, from: string): Setup {
  const api = new ApiClient({ url: state.control!.url, token: state.control!.token });
  const target = `http://127.0.0.1:${state.gateway_port}`;
  const d = describeLab(state);
  return {
    driver: new FleetDriver(api), target,
    hostStats: (site) => labHostSource(state, state.hosts.filter((h) => h.site === site).map((h) => h.name)),
    isGatewayNode: (n) => n.labels['lab-host'] === from,
    environment: {
      mode: 'lab', target: `${target} in lab host '${from}'`, control: state.control!.url, protocol: flags.protocol,
      shaping: state.shaping ? `delay, jitter and loss by ${state.shaping.delay}, bandwidth by ${state.shaping.bandwidth}` : undefined,
      links: d.links, hosts: d.hosts,
    },
  };
}

async function fleetSetup(flags: ExperimentFlags): Promise<Setup> {
  const creds = await loadCredentials({ url: flags.control });
  const target = flags.target ?? 'http://127.0.0.1:8000';
  const host = new URL(target).hostname;
  return {
    driver: new FleetDriver(new ApiClient(creds)), target,
    hostStats: (site) => controlPlaneSource(creds.url, creds.token, (n) => (n.facts.site === site || n.labels.site === site ? n.id : undefined)),
    isGatewayNode: (n) => n.facts.address === host,
    environment: { mode: 'fleet', target, control: creds.url, protocol: flags.protocol, links: [], hosts: [] },
  };
}

async function writeOutputs(out: string, report: ExperimentReport): Promise<string[]> {
  await mkdir(out, { recursive: true });
  const plots = await writePlots(out, report.cells, 'edge vs cloud');
  await writeFile(path.join(out, 'results.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(path.join(out, 'report.md'), renderExperimentMarkdown(report, plots));
  return ['results.json', 'report.md', ...plots];
}

/** Re-judges the findings of a finished run and rewrites its report and plots (e.g. after a change to either). */
async function reportFrom(file: string, out: string): Promise<number> {
  const report = ExperimentReportSchema.parse(JSON.parse(await readFile(file, 'utf8')));
  report.findings = judgeFindings(report.cells, heavyModel(report.settings.models), report.settings.users);
  const files = await writeOutputs(out, report);
  process.stdout.write(`rewrote ${files.join(', ')} in ${out} from ${file}\n`);
  return 0;
}

export async function experimentCommand(flags: ExperimentFlags): Promise<number> {
  if (flags.reportFrom) return reportFrom(flags.reportFrom, flags.out);
  let state: LabState | undefined;
  if (!flags.control) {
    state = findLab(stateRoot(flags.stateDir), flags.lab);
    if (!insideLabHost()) return rerunInHost(state, flags.from);
  }
  const setup = state ? labSetup(state, flags, insideLabHost()!) : await fleetSetup(flags);
  const tmp = flags.modelRepository ? undefined : await mkdtemp(path.join(tmpdir(), 'tern-exp-models-'));
  const repository = flags.modelRepository ?? tmp!;
  if (tmp) await writeDemoRepository(tmp, { models: [...new Set([...flags.models, ...(flags.cache ? cacheModels(flags.models) : [])])] });
  const cells = cellCount(flags);
  const progress = new BenchProgress(cells * (flags.warmup + flags.duration), cells);
  let report: ExperimentReport;
  try {
    report = await runEdgeVsCloud({
      ...setup, protocol: flags.protocol, models: flags.models, users: flags.users, replicas: flags.replicas, sites: flags.sites,
      warmupMs: flags.warmup, durationMs: flags.duration, cache: flags.cache, repository, progress, log: (l) => progress.log(l),
    });
  } finally {
    progress.stop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
  const files = await writeOutputs(flags.out, report);
  process.stdout.write([
    ...report.findings.map((x) => `${x.reproduced === null ? 'not judged' : x.reproduced ? 'REPRODUCED' : 'NOT REPRODUCED'}: ${x.finding}: ${x.evidence}`),
    `wrote ${files.length} files to ${flags.out}: ${files.join(', ')}`,
    '',
  ].join('\n'));
  return 0;
}
