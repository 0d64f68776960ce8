/**
 * Container engines for tests, started by the test itself: Podman's
 * Docker-compatible service (with runc and ulimits within this machine's hard
 * limits, from a containers.conf of our own) and Docker Engine (dockerd with
 * its own data root, no bridge, no iptables). Either can run inside a network
 * namespace (nsenter --net, keeping the host's mount namespace), so that
 * containers with host networking share that node's network.
 *
 * The model-server image is built once (tern image build caches it by a hash
 * of its inputs) and loaded into an engine only when the engine lacks that build.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, writeFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { connectEngine, type Engine } from '../src/containers/engine.js';
import { buildImage, type BuiltImage } from '../src/containers/image-build.js';
import { inspectImage, loadImageArchive } from '../src/containers/images.js';
import type { PlatformName } from '../src/containers/platform.js';
import { LABELS } from '../src/containers/labels.js';
import { TEST_HOME } from './global-setup.js';

export type EngineKind = 'podman' | 'docker';

const BINARIES: Record<EngineKind, string[]> = { podman: ['podman', 'runc'], docker: ['dockerd', 'containerd', 'runc'] };

function which(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** Why `kind` cannot run here, or undefined when it can. */
export function engineUnavailable(kind: EngineKind): string | undefined {
  if (process.platform !== 'linux') return 'container engines need Linux';
  if (process.getuid?.() !== 0) return 'the container tests run rootful engines and need root';
  const missing = BINARIES[kind].filter((b) => !which(b));
  if (missing.length) return `${missing.join(', ')} not installed (apt-get install ${kind === 'podman' ? 'podman runc' : 'docker.io'})`;
  return undefined;
}

/** Skips with a printed reason outside CI; in CI the test must run, so a missing engine fails it. */
export function requireEngine(kind: EngineKind, what: string): boolean {
  const why = engineUnavailable(kind);
  if (!why) return true;
  if (process.env.CI) throw new Error(`${what} must run in CI, but: ${why}`);
  console.warn(`SKIPPED ${what}: ${why}`);
  return false;
}

export interface TestEngine {
  kind: EngineKind;
  url: string;
  engine: Engine;
  stop(): Promise<void>;
}

const PODMAN_CONF = `[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
`;

function podmanConf(): string {
  const dir = path.join(TEST_HOME, 'podman');
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'containers.conf');
  writeFileSync(file, PODMAN_CONF);
  return file;
}

function spawnDaemon(cmd: string, args: string[], netns: string | undefined, env: NodeJS.ProcessEnv, logFile: string): ChildProcess {
  const out = openSync(logFile, 'a');
  const [bin, argv] = netns ? ['nsenter', [`--net=/run/netns/${netns}`, cmd, ...args]] : [cmd, args];
  const child = spawn(bin, argv, { stdio: ['ignore', out, out], env: { ...process.env, ...env }, detached: false });
  closeSync(out);
  return child;
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

function stopper(child: ChildProcess, cleanup: () => void): () => Promise<void> {
  return async () => {
    if (child.exitCode === null) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await gone;
      clearTimeout(t);
    }
    cleanup();
  };
}

/**
 * Starts an engine named `name` (a `ternc` prefix keeps it apart from other
 * helpers' resources), optionally inside network namespace `netns`.
 */
export async function startEngine(kind: EngineKind, name: string, netns?: string): Promise<TestEngine> {
  const logDir = path.join(TEST_HOME, 'engines');
  mkdirSync(logDir, { recursive: true });
  const logFile = path.join(logDir, `${name}.log`);
  if (kind === 'podman') {
    const socket = `/run/${name}-podman.sock`;
    rmSync(socket, { force: true });
    const child = spawnDaemon('podman', ['system', 'service', '--time=0', `unix://${socket}`], netns, { CONTAINERS_CONF: podmanConf() }, logFile);
    const engine = await waitForEngine(`unix://${socket}`, child, logFile);
    return { kind, url: `unix://${socket}`, engine, stop: stopper(child, () => rmSync(socket, { force: true })) };
  }
  const socket = `/run/${name}-docker.sock`;
  const execRoot = `/run/${name}-docker`;
  rmSync(socket, { force: true });
  const child = spawnDaemon('dockerd', [
    '--host', `unix://${socket}`, '--data-root', `/var/lib/${name}-docker`, '--exec-root', execRoot,
    '--pidfile', `/run/${name}-docker.pid`, '--bridge=none', '--iptables=false', '--ip6tables=false', '--ip-masq=false',
  ], netns, {}, logFile);
  const engine = await waitForEngine(`unix://${socket}`, child, logFile);
  return { kind, url: `unix://${socket}`, engine, stop: stopper(child, () => rmSync(socket, { force: true })) };
}

/** Builds (or reuses) the model-server image for `platform` and loads it into the engine unless it has this very build. */
export async function ensureServeImage(engine: Engine, platform: PlatformName = 'linux/amd64'): Promise<BuiltImage> {
  const built = await buildImage({ platform, projectRoot: path.resolve('.') });
  const present = await inspectImage(engine, built.tag);
  if (present?.labels['tern.inputs'] !== built.inputsHash) await loadImageArchive(engine, built.archive);
  return built;
}

/** Removes every container an agent (or driver) owning `owner` left behind. */
export async function removeOwned(engine: Engine, owner: string): Promise<number> {
  const list = await engine.docker.listContainers({ all: true, filters: { label: [`${LABELS.owner}=${owner}`] } });
  await Promise.all(list.map((c) => engine.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  return list.length;
}

export function hasNetns(name: string): boolean {
  return existsSync(`/run/netns/${name}`);
}
