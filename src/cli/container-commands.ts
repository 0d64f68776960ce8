/**
 * `tern containers ...`: operate the containers tern runs (replicas and app
 * workloads) on this machine's engine, or on a fleet node through the control
 * plane with --node (container-targets.ts). The engine and API code load only
 * when one of these runs.
 */
import type { Command } from 'commander';
import type { Lifecycle } from '../containers/container-ops.js';
import type { LogChunk } from '../containers/logs.js';
import { parsePositiveInt } from './options.js';
import { formatTable } from './api-client.js';
import type { ContainerTarget } from './container-targets.js';

type Fail = (err: unknown) => never;

/** Output goes where the container wrote it; a slow terminal holds the stream back. */
const write = (c: LogChunk): Promise<void> | void => {
  const out = c.stream === 'stderr' ? process.stderr : process.stdout;
  if (!out.write(c.data)) return new Promise((resolve) => out.once('drain', () => resolve()));
};

/** `--since 10m`, `30s`, `2h`, or a unix time in seconds. */
export function parseSince(value: string, now = Date.now()): number {
  const m = /^(\d+)([smh]?)$/.exec(value.trim());
  if (!m) throw new Error(`--since '${value}' must be a duration like 30s, 10m, 2h or a unix time in seconds`);
  const n = Number(m[1]);
  if (!m[2]) return n;
  return Math.floor(now / 1000) - n * { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h'];
}

export function registerContainerCommands(program: Command, fail: Fail): void {
  const containers = program.command('containers').description('the containers tern runs (replicas and app workloads) on this node\'s engine, or on a fleet node with --node')
    .option('--engine <url>', 'container engine (default: DOCKER_HOST or a default socket)')
    .option('--node <id>', 'operate on this node of the fleet, through the control plane you logged in to');
  const target = async (): Promise<ContainerTarget> => {
    const o = containers.opts<{ engine?: string; node?: string }>();
    if (o.node && o.engine) throw new Error('--node and --engine exclude each other: --node goes through the control plane to that node\'s engine');
    const t = await import('./container-targets.js');
    if (!o.node) return t.localTarget(o.engine);
    const { ApiClient, loadCredentials } = await import('./api-client.js');
    return t.remoteTarget(new ApiClient(await loadCredentials()), o.node);
  };
  const act = <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => fn(...args).catch(fail);

  containers.command('ls', { isDefault: true }).option('--json').action(act(async (o: { json?: boolean }) => {
    const list = await (await target()).list();
    process.stdout.write(`${o.json ? JSON.stringify(list, null, 2) : formatTable(list.map(({ labels: _l, ...rest }) => rest), ['name', 'id', 'image', 'state', 'kind'])}\n`);
  }));
  containers.command('inspect <name>').action(act(async (name: string) => {
    process.stdout.write(`${JSON.stringify(await (await target()).inspect(name), null, 2)}\n`);
  }));
  for (const op of ['start', 'stop', 'restart', 'rm'] as Lifecycle[]) {
    containers.command(`${op} <name>`).option('--time <s>', 'seconds to wait before killing it', parsePositiveInt, 5).action(act(async (name: string, o: { time: number }) => {
      await (await target()).lifecycle(name, op, o.time);
      process.stdout.write(`${name}: ${op === 'rm' ? 'removed' : `${op}${op.endsWith('p') ? 'ped' : 'ed'}`}\n`);
    }));
  }
  containers.command('logs <name>').description('print a container\'s output (stdout and stderr as they were)')
    .option('-f, --follow', 'keep streaming new output until interrupted')
    .option('--tail <n>', 'only the last n lines', parsePositiveInt)
    .option('--since <when>', 'only output since: 30s, 10m, 2h or a unix time')
    .option('--timestamps', 'prefix lines with their time')
    .action(act(async (name: string, o: { follow?: boolean; tail?: number; since?: string; timestamps?: boolean }) => {
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      await (await target()).logs(name, { follow: o.follow, tail: o.tail, since: o.since ? parseSince(o.since) : undefined, timestamps: o.timestamps, signal: stop.signal }, write);
    }));
  containers.command('exec <name> <command...>').description('run a one-off command in a running container; exits with its code (admin only with --node)')
    .action(act(async (name: string, command: string[]) => {
      process.exitCode = await (await target()).exec(name, command, write);
    }));
  containers.command('cp <from> <to>').description('copy a file into (FILE NAME:/path) or out of (NAME:/path FILE) a container')
    .option('--no-progress', 'do not report upload progress')
    .action(act(async (from: string, to: string, o: { progress: boolean }) => {
      const remote = (s: string) => /^[A-Za-z0-9][A-Za-z0-9_.-]*:\//.exec(s) ? { name: s.slice(0, s.indexOf(':')), path: s.slice(s.indexOf(':') + 1) } : undefined;
      const [src, dst] = [remote(from), remote(to)];
      if (!!src === !!dst) throw new Error('cp needs exactly one side in a container, written NAME:/path');
      const t = await target();
      if (dst) {
        let shown = -1;
        await t.copyIn(dst.name, from, dst.path, o.progress ? (sent, total) => {
          const pct = total ? Math.floor((sent / total) * 100) : 100;
          if (pct >= shown + 25 || sent === total) {
            shown = pct;
            process.stderr.write(`${from}: ${pct}% (${sent}/${total} bytes)\n`);
          }
        } : undefined);
        process.stdout.write(`copied ${from} to ${to}\n`);
      } else {
        const size = await t.copyOut(src!.name, src!.path, to);
        process.stdout.write(`copied ${from} to ${to} (${size} bytes)\n`);
      }
    }));
}
