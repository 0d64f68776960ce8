/**
 * `tern containers ...`: operate the containers on a node's engine (tern's
 * replicas and app workloads). Registered with every command, so the engine
 * code loads only when one of these runs.
 */
import type { Command } from 'commander';
import type { Engine } from '../containers/engine.js';
import type { Lifecycle } from '../containers/container-ops.js';
import type { LogChunk } from '../containers/logs.js';
import { parsePositiveInt } from './options.js';
import { formatTable } from './api-client.js';

type Fail = (err: unknown) => never;

const write = (c: LogChunk) => (c.stream === 'stderr' ? process.stderr : process.stdout).write(c.data);

/** `--since 10m`, `30s`, `2h`, or a unix time in seconds. */
export function parseSince(value: string, now = Date.now()): number {
  const m = /^(\d+)([smh]?)$/.exec(value.trim());
  if (!m) throw new Error(`--since '${value}' must be a duration like 30s, 10m, 2h or a unix time in seconds`);
  const n = Number(m[1]);
  if (!m[2]) return n;
  return Math.floor(now / 1000) - n * { s: 1, m: 60, h: 3600 }[m[2] as 's' | 'm' | 'h'];
}

export function registerContainerCommands(program: Command, fail: Fail): void {
  const containers = program.command('containers').description('the containers on this node\'s engine: replicas and app workloads')
    .option('--engine <url>', 'container engine (default: DOCKER_HOST or a default socket)');
  const engine = async (): Promise<Engine> => (await import('../containers/engine.js')).connectEngine(containers.opts<{ engine?: string }>().engine);
  const ops = () => import('../containers/container-ops.js');
  const act = <A extends unknown[]>(fn: (...args: A) => Promise<void>) => (...args: A) => fn(...args).catch(fail);

  containers.command('ls', { isDefault: true }).option('--json').action(act(async (o: { json?: boolean }) => {
    const list = await (await ops()).listContainers(await engine());
    process.stdout.write(`${o.json ? JSON.stringify(list, null, 2) : formatTable(list.map(({ labels: _l, ...rest }) => rest), ['name', 'id', 'image', 'state', 'kind'])}\n`);
  }));
  containers.command('inspect <name>').action(act(async (name: string) => {
    process.stdout.write(`${JSON.stringify((await (await ops()).container(await engine(), name)).info, null, 2)}\n`);
  }));
  for (const op of ['start', 'stop', 'restart', 'rm'] as Lifecycle[]) {
    containers.command(`${op} <name>`).option('--time <s>', 'seconds to wait before killing it', parsePositiveInt, 5).action(act(async (name: string, o: { time: number }) => {
      await (await ops()).lifecycle(await engine(), name, op, o.time);
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
      await (await ops()).streamLogs(await engine(), name, { follow: o.follow, tail: o.tail, since: o.since ? parseSince(o.since) : undefined, timestamps: o.timestamps, signal: stop.signal }, write);
    }));
  containers.command('exec <name> <command...>').description('run a one-off command in a running container; exits with its code')
    .action(act(async (name: string, command: string[]) => {
      process.exitCode = await (await ops()).exec(await engine(), name, command, write);
    }));
  containers.command('cp <from> <to>').description('copy a file into (FILE NAME:/path) or out of (NAME:/path FILE) a container')
    .action(act(async (from: string, to: string) => {
      const remote = (s: string) => /^[A-Za-z0-9][A-Za-z0-9_.-]*:\//.exec(s) ? { name: s.slice(0, s.indexOf(':')), path: s.slice(s.indexOf(':') + 1) } : undefined;
      const [src, dst] = [remote(from), remote(to)];
      if (!!src === !!dst) throw new Error('cp needs exactly one side in a container, written NAME:/path');
      const e = await engine();
      if (dst) {
        let shown = -1;
        await (await ops()).copyIn(e, dst.name, from, dst.path, (sent, total) => {
          const pct = Math.floor((sent / total) * 100);
          if (pct >= shown + 25 || sent === total) {
            shown = pct;
            process.stderr.write(`${from}: ${pct}% (${sent}/${total} bytes)\n`);
          }
        });
        process.stdout.write(`copied ${from} to ${to}\n`);
      } else {
        const size = await (await ops()).copyOut(e, src!.name, src!.path, to);
        process.stdout.write(`copied ${from} to ${to} (${size} bytes)\n`);
      }
    }));
}
