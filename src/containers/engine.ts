/**
 * A connection to a container engine over the Docker Engine API (dockerode):
 * Docker Engine, or Podman's Docker-compatible service. dockerode is loaded
 * on first use, so a process that never touches containers (the lean agent
 * with only the process runtime) does not carry it.
 */
import { existsSync } from 'node:fs';
import { createRequire, Module } from 'node:module';
import type Docker from 'dockerode';

export type EngineKind = 'docker' | 'podman';

export interface Engine {
  docker: Docker;
  /** How it was reached, e.g. unix:///run/podman/podman.sock. */
  url: string;
  kind: EngineKind;
  version: string;
  /** The engine's own platform, e.g. linux/amd64. */
  os: string;
  arch: string;
  /** How the engine manages cgroups: `cgroupfs` (paths) or `systemd` (slices). */
  cgroupDriver: string;
}

/** Sockets tried when no engine is named (Podman's rootful service first, then Docker's). */
export const DEFAULT_ENGINE_SOCKETS = ['/run/podman/podman.sock', '/var/run/docker.sock'];

const require = createRequire(import.meta.url);

/**
 * docker-modem loads ssh2 for ssh:// engines, and ssh2 compiles WebAssembly
 * as it loads; the lean agent runtime has no WebAssembly (agent/footprint.ts).
 * tern reaches engines over unix sockets and TCP only, so where WebAssembly is
 * missing ssh2 is replaced by a stub that refuses ssh.
 */
function withoutSsh(): void {
  if (typeof WebAssembly !== 'undefined') return;
  const ssh2 = createRequire(require.resolve('docker-modem')).resolve('ssh2');
  if (require.cache[ssh2]) return;
  const stub = new Module(ssh2);
  stub.exports = { Client: class { constructor() { throw new Error('ssh:// container engines are not supported by tern; use unix:// or tcp://'); } } };
  stub.loaded = true;
  require.cache[ssh2] = stub;
}

let dockerode: Promise<typeof Docker> | undefined;
function loadDockerode(): Promise<typeof Docker> {
  withoutSsh();
  dockerode ??= import('dockerode').then((m) => m.default);
  return dockerode;
}

/** dockerode options for unix:///path, /path, tcp://host:port or http(s)://host:port. */
export function engineOptions(url: string): Docker.DockerOptions {
  if (url.startsWith('unix://')) return { socketPath: url.slice('unix://'.length) };
  if (url.startsWith('/')) return { socketPath: url };
  const m = /^(tcp|http|https):\/\/([^:/]+)(?::([0-9]+))?\/?$/.exec(url);
  if (!m) throw new Error(`container engine '${url}' must look like unix:///run/podman/podman.sock or tcp://host:2375`);
  return { protocol: m[1] === 'https' ? 'https' : 'http', host: m[2], port: Number(m[3] ?? (m[1] === 'https' ? 2376 : 2375)) };
}

/** The engine to use when none is named: DOCKER_HOST, else the first default socket that exists. */
export function defaultEngineUrl(): string | undefined {
  if (process.env.DOCKER_HOST) return process.env.DOCKER_HOST;
  const socket = DEFAULT_ENGINE_SOCKETS.find((s) => existsSync(s));
  return socket ? `unix://${socket}` : undefined;
}

export async function connectEngine(url = defaultEngineUrl()): Promise<Engine> {
  if (!url) throw new Error(`no container engine found (looked for ${DEFAULT_ENGINE_SOCKETS.join(', ')} and DOCKER_HOST); start one (podman system service, dockerd) or name it`);
  const Dockerode = await loadDockerode();
  const docker = new Dockerode({ ...engineOptions(url), timeout: 0 });
  let info: Docker.DockerVersion;
  try {
    info = await docker.version();
  } catch (err) {
    throw new Error(`container engine at ${url} is not reachable: ${(err as Error).message}`);
  }
  const kind: EngineKind = (info.Components ?? []).some((c) => /podman/i.test(c.Name)) ? 'podman' : 'docker';
  const system = (await docker.info().catch(() => ({}))) as { CgroupDriver?: string };
  return { docker, url, kind, version: info.Version, os: info.Os, arch: info.Arch, cgroupDriver: system.CgroupDriver ?? 'unknown' };
}

/** Error text of a dockerode failure: the engine's own message when it sent one. */
export function engineMessage(err: unknown): string {
  const e = err as { json?: { message?: string }; reason?: string; message?: string; statusCode?: number };
  return e.json?.message ?? e.message ?? e.reason ?? String(err);
}

export function isNotFound(err: unknown): boolean {
  return (err as { statusCode?: number }).statusCode === 404;
}
