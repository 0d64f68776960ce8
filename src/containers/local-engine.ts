/**
 * Starts a container engine on this machine for tern's own use (tests and
 * `npm run bench:runtimes`): Podman's Docker-compatible service, with runc
 * and ulimits within this machine's hard limits from a containers.conf of our
 * own (crun fails on these hybrid cgroups), or Docker Engine with its own
 * data root, no bridge and no iptables. Either can run inside a network
 * namespace (nsenter --net keeps the host's mount namespace), so that
 * containers with host networking share that node's network.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { connectEngine, type Engine, type EngineKind } from './engine.js';

export interface LocalEngine {
  kind: EngineKind;
  url: string;
  engine: Engine;
  stop(): Promise<void>;
}

export interface LocalEngineOptions {
  /** Names the socket, data root and log: /run/<name>-<kind>.sock. */
  name: string;
  /** Where containers.conf, registries.conf and the log go. */
  workDir: string;
  /** Network namespace (ip netns) to run the engine in. */
  netns?: string;
  /** Registries reached over plain HTTP. */
  insecureRegistries?: string[];
}

export const PODMAN_CONF = `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
`;

function spawnDaemon(cmd: string, args: string[], netns: string | undefined, env: NodeJS.ProcessEnv, logFile: string): ChildProcess {
  const out = openSync(logFile, 'a');
  const [bin, argv] = netns ? ['nsenter', [`--net=/run/netns/${netns}`, cmd, ...args]] : [cmd, args];
  const child = spawn(bin, argv, { stdio: ['ignore', out, out], env: { ...process.env, ...env } });
  closeSync(out);
  return child;
}

/** Runs `cmd` as a daemon logging to `logFile`; the returned function stops it (SIGTERM, SIGKILL after 15 s). */
export function startDaemon(cmd: string, args: string[], logFile: string, options: { netns?: string; env?: NodeJS.ProcessEnv } = {}): { child: ChildProcess; stop: () => Promise<void> } {
  const child = spawnDaemon(cmd, args, options.netns, options.env ?? {}, logFile);
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await gone;
    clearTimeout(t);
  };
  return { child, stop };
}

async function waitForEngine(url: string, child: ChildProcess, logFile: string): Promise<Engine> {
  const end = Date.now() + 60_000;
  let last = '';
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`the engine exited with code ${child.exitCode}; see ${logFile}`);
    try {
      return await connectEngine(url);
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the engine at ${url} did not come up in 60 s (${last}); see ${logFile}`);
}

/**
 * An engine of the same name left running by a run that was killed before it
 * could stop it (its pid file names it, and its command line names our
 * socket): stopped, so that this run can take the socket and data root.
 */
async function stopLeftover(pidFile: string, socket: string): Promise<void> {
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  const cmdline = pid > 0 ? await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '') : '';
  if (cmdline.includes(socket)) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 150 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 100));
    if (existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
  }
  rmSync(pidFile, { force: true });
}

export async function startLocalEngine(kind: EngineKind, o: LocalEngineOptions): Promise<LocalEngine> {
  mkdirSync(o.workDir, { recursive: true });
  const logFile = path.join(o.workDir, `${o.name}-${kind}.log`);
  const socket = `/run/${o.name}-${kind}.sock`;
  const pidFile = `/run/${o.name}-${kind}.pid`;
  const url = `unix://${socket}`;
  const insecure = o.insecureRegistries ?? [];
  if (existsSync(pidFile)) await stopLeftover(pidFile, socket);
  rmSync(socket, { force: true });
  let daemon: ReturnType<typeof startDaemon>;
  if (kind === 'podman') {
    const conf = path.join(o.workDir, 'containers.conf');
    writeFileSync(conf, PODMAN_CONF);
    const registries = path.join(o.workDir, `${o.name}-registries.conf`);
    writeFileSync(registries, insecure.map((r) => `[[registry]]\nlocation = "${r}"\ninsecure = true\n`).join(''));
    daemon = startDaemon('podman', ['system', 'service', '--time=0', url], logFile,
      { netns: o.netns, env: { CONTAINERS_CONF: conf, CONTAINERS_REGISTRIES_CONF: registries } });
  } else {
    daemon = startDaemon('dockerd', [
      '--host', url, '--data-root', `/var/lib/${o.name}-docker`, '--exec-root', `/run/${o.name}-docker`,
      '--pidfile', pidFile, '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-masq=false',
      ...insecure.flatMap((r) => ['--insecure-registry', r]),
    ], logFile, { netns: o.netns });
  }
  // dockerd writes its own pid file; Podman's service does not, so it is written here (nsenter execs the engine: same pid).
  if (kind === 'podman' && daemon.child.pid) writeFileSync(pidFile, `${daemon.child.pid}\n`);
  try {
    const engine = await waitForEngine(url, daemon.child, logFile);
    return { kind, url, engine, stop: async () => { await daemon.stop(); rmSync(socket, { force: true }); if (kind === 'podman') rmSync(pidFile, { force: true }); } };
  } catch (err) {
    await daemon.stop();
    throw err;
  }
}
