/**
 * Container engines for tests, started by the test itself
 * (../src/containers/local-engine.ts: Podman's compatible service or Docker
 * Engine, optionally inside a network namespace), and a registry.
 *
 * The model-server image is built once (tern image build caches it by a hash
 * of its inputs) and loaded into an engine only when the engine lacks that build.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Engine, EngineKind } from '../src/containers/engine.js';

export type { EngineKind };
import { startDaemon, startLocalEngine, type LocalEngine } from '../src/containers/local-engine.js';
import { buildImage, type BuiltImage } from '../src/containers/image-build.js';
import { inspectImage, loadImageArchive } from '../src/containers/images.js';
import type { PlatformName } from '../src/containers/platform.js';
import { LABELS } from '../src/containers/labels.js';
import { TEST_HOME } from './global-setup.js';

const BINARIES: Record<EngineKind | 'registry', string[]> = { podman: ['podman', 'runc'], docker: ['dockerd', 'containerd', 'runc'], registry: ['docker-registry'] };

function which(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

/** Why `kind` cannot run here, or undefined when it can. */
export function engineUnavailable(kind: EngineKind | 'registry'): string | undefined {
  if (process.platform !== 'linux') return 'container engines need Linux';
  if (process.getuid?.() !== 0) return 'the container tests run rootful engines and need root';
  const missing = BINARIES[kind].filter((b) => !which(b));
  if (missing.length) return `${missing.join(', ')} not installed (apt-get install ${{ podman: 'podman runc', docker: 'docker.io', registry: 'docker-registry' }[kind]})`;
  return undefined;
}

/** Skips with a printed reason outside CI; in CI the test must run, so a missing engine fails it. */
export function requireEngine(kind: EngineKind | 'registry', what: string): boolean {
  const why = engineUnavailable(kind);
  if (!why) return true;
  if (process.env.CI) throw new Error(`${what} must run in CI, but: ${why}`);
  console.warn(`SKIPPED ${what}: ${why}`);
  return false;
}

export type TestEngine = LocalEngine;

/**
 * Starts an engine named `name` (a `ternc` prefix keeps it apart from other
 * helpers' resources), optionally inside network namespace `netns`.
 */
export function startEngine(kind: EngineKind, name: string, netns?: string, options: { insecureRegistries?: string[] } = {}): Promise<TestEngine> {
  return startLocalEngine(kind, { name, workDir: path.join(TEST_HOME, 'engines'), netns, ...options });
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

/**
 * Sets up qemu-user emulation of arm64 (Debian qemu-user-static and
 * binfmt-support): mounts binfmt_misc when it is not, enables qemu-aarch64.
 * Returns why it cannot, or undefined once arm64 binaries run here.
 */
export function enableArm64Emulation(): string | undefined {
  if (process.arch === 'arm64') return undefined;
  if (process.getuid?.() !== 0) return 'setting up binfmt_misc needs root';
  if (!which('update-binfmts') || !existsSync('/usr/libexec/qemu-binfmt') && !which('qemu-aarch64-static')) {
    return 'qemu-user-static and binfmt-support are not installed (apt-get install qemu-user-static binfmt-support)';
  }
  try {
    if (!existsSync('/proc/sys/fs/binfmt_misc/status')) execFileSync('mount', ['-t', 'binfmt_misc', 'binfmt_misc', '/proc/sys/fs/binfmt_misc'], { stdio: 'pipe' });
    execFileSync('update-binfmts', ['--enable', 'qemu-aarch64'], { stdio: 'pipe' });
  } catch (err) {
    return `cannot enable qemu-aarch64 in binfmt_misc: ${(err as Error).message.split('\n')[0]}`;
  }
  return existsSync('/proc/sys/fs/binfmt_misc/qemu-aarch64') ? undefined : 'qemu-aarch64 is not registered in binfmt_misc';
}

export interface TestRegistry {
  address: string;
  stop(): Promise<void>;
}

/** Debian's docker-registry (the CNCF distribution registry) on `address`, storing in a scratch folder. */
export async function startRegistry(address: string, storage: string): Promise<TestRegistry> {
  const config = path.join(storage, 'config.yml');
  mkdirSync(storage, { recursive: true });
  writeFileSync(config, `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(storage, 'data')}\nhttp:\n  addr: ${address}\n`);
  const logFile = path.join(storage, 'registry.log');
  const { child, stop } = startDaemon('docker-registry', ['serve', config], logFile);
  const end = Date.now() + 20_000;
  while (Date.now() < end) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited with code ${child.exitCode}; see ${logFile}`);
    const ok = await fetch(`http://${address}/v2/`).then((r) => r.status === 200, () => false);
    if (ok) return { address, stop };
    await new Promise((r) => setTimeout(r, 100));
  }
  await stop();
  throw new Error(`docker-registry did not answer on ${address} in 20 s; see ${logFile}`);
}
