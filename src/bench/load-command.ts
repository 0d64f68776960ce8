/** `tern bench load`: flags -> a load run (from a lab host when asked) -> report files and a table on stdout. */
import path from 'node:path';
import type { LoadFlags } from '../cli/bench-commands.js';
import { insideLabHost, rerunInHost } from '../lab/reexec.js';
import { findLab, recordedLabs, stateRoot } from '../lab/state.js';
import type { LabState } from '../protocol/lab.js';
import { labHostSource } from './host-stats.js';
import { renderLoadMarkdown, runLoadBench } from './load-bench.js';
import { BenchProgress } from './progress.js';
import { writeResults } from './report.js';

function labFor(flags: LoadFlags): LabState | undefined {
  const root = stateRoot(flags.stateDir);
  if (flags.lab || flags.from) return findLab(root, flags.lab);
  return recordedLabs(root).length === 1 ? findLab(root) : undefined;
}

export async function loadCommand(flags: LoadFlags): Promise<number> {
  try {
    new URL(flags.target);
  } catch {
    throw new Error(`--target '${flags.target}' is not a URL (e.g. http://10.79.0.10:8000)`);
  }
  const lab = labFor(flags);
  if (flags.from && !insideLabHost()) return rerunInHost(lab!, flags.from);
  const sampled = lab ? flags.hosts ?? lab.hosts.filter((h) => h.name !== (flags.from ?? insideLabHost())).map((h) => h.name) : [];
  const steps = flags.rate?.length ?? flags.users.length;
  const progress = new BenchProgress(steps * (flags.warmup + flags.duration), steps);
  let report;
  try {
    report = await runLoadBench({
      target: flags.target, grpcTarget: flags.grpcTarget, model: flags.model, protocol: flags.protocol, users: flags.users, rates: flags.rate,
      warmupMs: flags.warmup, durationMs: flags.duration, inputs: flags.inputs, progress,
      hostStats: lab ? labHostSource(lab, sampled) : undefined,
    });
  } finally {
    progress.stop();
  }
  const markdown = renderLoadMarkdown(report);
  const files = await writeResults(flags.out, { json: report, markdown }, `load-${flags.model}`);
  process.stdout.write(`${markdown}\nwrote ${path.relative(process.cwd(), files.json)} and ${path.relative(process.cwd(), files.markdown)}\n`);
  return 0;
}
