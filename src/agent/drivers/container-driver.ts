/**
 * The `container` runtime: each replica is a container of the model-server
 * image (`tern image build`), run through the Docker Engine API (Docker or
 * Podman's compatible service) with:
 *
 * - the replica's model repository (replica-repository.ts) mounted read-only at /models;
 * - host networking (the engine runs in the node's network namespace, so the
 *   replica listens on the node's port like a process replica would);
 * - CPU (NanoCpus) and memory limits from the spec's resources;
 * - restart policy `no`: the supervisor restarts, with its backoff, as for processes;
 * - labels (../../containers/labels.ts) by which a restarted agent adopts its
 *   running containers instead of starting duplicates, and removes orphans.
 *
 * It also runs app workloads (replicas of `kind: container` deployments): any
 * image with its command, environment, ports (host networking, or bridge with
 * published ports), volumes and the same limits, labels and restart policy;
 * ready once running and accepting connections on its published TCP ports.
 *
 * dockerode is loaded on first use (../../containers/engine.ts).
 */
import { createHash } from 'node:crypto';
import { readdirSync, realpathSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { hostPorts, type ContainerStats, type ReplicaSpec, type WorkloadReplicaSpec, type WorkloadSpec } from '../../protocol/fleet.js';
import { connectEngine, engineMessage, isNotFound, type Engine } from '../../containers/engine.js';
import { cpuReservation } from '../../containers/limits.js';
import { containerUsage, type CpuSample, type EngineStats } from '../../containers/container-stats.js';
import { checkPlatform, inspectImage, loadImageArchive } from '../../containers/images.js';
import { fetchImageArchive } from '../image-fetch.js';
import { LABELS, ownerFilter } from '../../containers/labels.js';
import { ExitWatch } from '../../containers/exit-watch.js';
import { lastLines } from '../../containers/logs.js';
import { accepts, portFree } from '../../containers/port-checks.js';
import { parseImageRef, pullImage } from '../../containers/registry.js';
import { defaultImageTag, hostPlatform } from '../../containers/platform.js';
import { SERVER_VERSION } from '../../protocol/oip.js';
import { STATE_FILES } from '../state-files.js';
import {
  ExitNotice, registerDriver, replicaDirName,
  type AdoptedReplica, type DriverContext, type ReplicaExit, type ReplicaHandle, type ReplicaUsage, type RuntimeDriver, type StartOptions,
} from './driver.js';
import { buildRepository } from './replica-repository.js';

export interface ContainerDriverConfig extends DriverContext {
  /** Engine URL (unix:///run/podman/podman.sock, tcp://host:2375); default: DOCKER_HOST or a default socket. */
  engine?: string;
  /** Model-server image; default tern/serve:<version>-<node arch>. */
  image?: string;
  /** Platforms this node runs (the first is its own); more when emulation (qemu-user) is set up. */
  platforms?: string[];
  readyTimeoutMs?: number;
  stopGraceMs?: number;
}

const LOG_LINES = 12;
const MODELS_MOUNT = '/models';

/** Container options of an app workload's command, environment, ports and mounts (limits and labels come from the driver). */
export function workloadOptions(w: WorkloadSpec): Pick<Docker.ContainerCreateOptions, 'Image' | 'Entrypoint' | 'Cmd' | 'Env' | 'WorkingDir' | 'ExposedPorts'> & { HostConfig: Docker.HostConfig } {
  const published = w.network === 'bridge' ? w.ports.filter((p) => p.published !== undefined) : [];
  return {
    Image: w.image,
    ...(w.entrypoint ? { Entrypoint: w.entrypoint } : {}),
    ...(w.command ? { Cmd: w.command } : {}),
    Env: Object.entries(w.env).map(([k, v]) => `${k}=${v}`),
    ...(w.working_dir ? { WorkingDir: w.working_dir } : {}),
    ...(published.length ? { ExposedPorts: Object.fromEntries(published.map((p) => [`${p.container}/${p.protocol}`, {}])) } : {}),
    HostConfig: {
      NetworkMode: w.network,
      Binds: w.volumes,
      ...(published.length ? { PortBindings: Object.fromEntries(published.map((p) => [`${p.container}/${p.protocol}`, [{ HostPort: String(p.published) }]])) } : {}),
    },
  };
}

function probeReady(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(url, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.setTimeout(2000, () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** A hash of the agent's data directory: tells this agent's containers from other agents' on a shared engine. */
export function ownerOf(dataDir: string): string {
  let dir = path.resolve(dataDir);
  try {
    dir = realpathSync(dir);
  } catch { /* not created yet */ }
  return createHash('sha256').update(dir).digest('hex').slice(0, 16);
}

export function describeLimits(engine: Engine, info: Docker.ContainerInspectInfo): string {
  const cpu = (info.HostConfig.NanoCpus ?? 0) / 1e9;
  const mem = (info.HostConfig.Memory ?? 0) / 1024 / 1024;
  const parts = [cpu > 0 ? `cpu ${cpu} cores` : 'cpu unlimited', mem > 0 ? `memory ${Math.round(mem)} MB` : 'memory unlimited'];
  return `limits enforced: ${engine.kind} ${engine.version} container: ${parts.join(', ')}`;
}

/**
 * Bind mounts that let an image of another architecture run under qemu-user:
 * ONNX Runtime's cpuinfo reads the CPU cache topology in sysfs, which under
 * emulation describes the host's x86 CPU, and crashes on it; with those
 * folders empty it falls back to defaults.
 */
export function emulationBinds(emptyDir: string, sysCpu = '/sys/devices/system/cpu'): string[] {
  let cpus: string[] = [];
  try {
    cpus = readdirSync(sysCpu).filter((d) => /^cpu[0-9]+$/.test(d));
  } catch {
    return [];
  }
  return cpus.map((cpu) => `${emptyDir}:${sysCpu}/${cpu}/cache:ro`);
}

/**
 * Removes a container and waits until the engine no longer lists it (another
 * party, e.g. a second driver that adopted it, may be removing it already: the
 * engine then refuses with "removal in progress").
 */
async function removeContainer(container: Docker.Container): Promise<void> {
  await container.remove({ force: true }).catch(() => undefined);
  for (let i = 0; i < 100; i++) {
    const gone = await container.inspect().then(() => false, (err: unknown) => isNotFound(err));
    if (gone) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

class ContainerReplica implements ReplicaHandle {
  private readonly exit = new ExitNotice();
  readonly exitPromise: Promise<ReplicaExit>;
  private stopRequested = false;
  private stopping: Promise<void> | undefined;
  private lastSample: CpuSample | undefined;

  constructor(
    private readonly container: Docker.Container,
    /** Resolves when the engine reports the container stopped (exit-watch.ts). */
    private readonly stopped: Promise<void>,
    readonly port: number,
    readonly grpcPort: number | undefined,
    readonly limits: string,
    readonly pid: number | undefined,
    private readonly defaultGraceMs: number,
    private readonly log: Logger | undefined,
  ) {
    this.exitPromise = this.watch();
  }

  get id(): string {
    return this.container.id;
  }

  get hasExited(): boolean {
    return this.exit.value !== undefined;
  }

  /** Waits for the container to stop, keeps its exit code and last lines, removes it. */
  private async watch(): Promise<ReplicaExit> {
    await this.stopped;
    const code = await this.container.inspect().then((i) => i.State.ExitCode, () => null);
    const lines = await this.lastLines();
    await removeContainer(this.container);
    const exited: ReplicaExit = { code, signal: code === 137 ? 'SIGKILL' : null, requested: this.stopRequested, lastLines: lines };
    this.exit.settle(exited);
    return exited;
  }

  async lastLines(): Promise<string[]> {
    try {
      const buf = (await this.container.logs({ stdout: true, stderr: true, tail: LOG_LINES, follow: false })) as unknown as Buffer;
      return lastLines(Buffer.isBuffer(buf) ? buf : Buffer.from(String(buf)), LOG_LINES);
    } catch {
      return [];
    }
  }

  onExit(cb: (exit: ReplicaExit) => void): void {
    this.exit.onExit(cb);
  }

  stop(graceMs = this.defaultGraceMs): Promise<void> {
    this.stopRequested = true;
    this.stopping ??= (async () => {
      if (!this.exit.value) {
        await this.container.stop({ t: Math.max(1, Math.ceil(graceMs / 1000)) }).catch((err: unknown) => {
          // 304: already stopped; 404: already gone. Anything else: make sure it goes.
          const status = (err as { statusCode?: number }).statusCode;
          if (status !== 304 && status !== 404) {
            this.log?.warn({ container: this.id, err: engineMessage(err) }, 'container stop failed; killing it');
            return this.container.kill().catch(() => undefined);
          }
          return undefined;
        });
      }
      await this.exitPromise;
    })();
    return this.stopping;
  }

  async stats(): Promise<ReplicaUsage | undefined> {
    if (this.exit.value) return undefined;
    // one-shot: the engine answers from one sample instead of waiting a second for two; CPU% comes from our own deltas.
    const raw = (await this.container.stats({ stream: false, 'one-shot': true } as { stream: false })) as unknown as EngineStats;
    const { usage, sample } = containerUsage(raw, this.lastSample);
    if (sample) this.lastSample = sample;
    return usage;
  }
}

export class ContainerDriver implements RuntimeDriver {
  readonly name = 'container' as const;
  readonly outlivesAgent = true;
  private engineConn: Promise<Engine> | undefined;
  private readonly running = new Set<ContainerReplica>();
  private exitWatch: ExitWatch | undefined;
  private readonly appSamples = new Map<string, CpuSample>();
  readonly owner: string;
  private readonly log: Logger | undefined;

  constructor(private readonly config: ContainerDriverConfig) {
    this.owner = ownerOf(config.dataDir);
    this.log = config.log;
  }

  /** The engine connection, made on first use; a failed attempt is retried on the next call. */
  engine(): Promise<Engine> {
    this.engineConn ??= connectEngine(this.config.engine).catch((err: unknown) => {
      this.engineConn = undefined;
      throw err;
    });
    return this.engineConn;
  }

  private exits(engine: Engine): ExitWatch {
    this.exitWatch ??= new ExitWatch(engine, ownerFilter(this.owner).label, this.log);
    return this.exitWatch;
  }

  /** Platforms this node runs images of. */
  platforms(engine: Engine): string[] {
    return this.config.platforms ?? [hostPlatform() ?? `${engine.os}/${engine.arch}`];
  }

  imageFor(spec: ReplicaSpec, engine: Engine): string {
    const own = this.platforms(engine)[0] as Parameters<typeof defaultImageTag>[1];
    return spec.image ?? this.config.image ?? defaultImageTag(SERVER_VERSION, own);
  }

  containerName(replicaId: string): string {
    return `tern-${this.owner.slice(0, 8)}-${replicaDirName(replicaId)}`;
  }

  private replicaDir(replicaId: string): string {
    return path.join(this.config.dataDir, STATE_FILES.replicas, replicaDirName(replicaId));
  }

  /** `kind`: model (a tern serve replica) or workload (a replica of a container deployment). */
  private labels(spec: { id: string; deployment: string; generation: number }, kind: 'model' | 'workload', port: number, grpcPort?: number): Record<string, string> {
    return {
      [LABELS.owner]: this.owner,
      ...(this.config.nodeId?.() ? { [LABELS.node]: this.config.nodeId() as string } : {}),
      [LABELS.replica]: spec.id,
      [LABELS.deployment]: spec.deployment,
      [LABELS.generation]: String(spec.generation),
      [LABELS.kind]: kind,
      [LABELS.port]: String(port),
      ...(grpcPort !== undefined ? { [LABELS.grpcPort]: String(grpcPort) } : {}),
    };
  }

  /** Checks what can be checked before anything is created: the image is there and for this node, the ports are free. Returns the image's platform. */
  private async preflight(engine: Engine, image: string, ports: number[]): Promise<string> {
    let facts = await inspectImage(engine, image);
    if (!facts) {
      await this.obtainImage(engine, image);
      facts = await inspectImage(engine, image);
    }
    if (!facts) {
      throw new Error(`image ${image} is not on this node's container engine (${engine.kind} ${engine.version} at ${engine.url}); `
        + 'build it with `tern image build --load`, push it to a registry the node reaches (`tern image push`), '
        + 'or upload its archive to the control plane (`tern image upload`)');
    }
    checkPlatform(image, facts, this.platforms(engine));
    for (const p of ports) {
      if (!(await portFree(p))) throw new Error(`port ${p} is already in use on this node, so the replica cannot listen on it`);
    }
    return facts.platform;
  }

  /** An image the engine lacks: pulled when its reference names a registry, else loaded from the control plane's archive when it holds one. */
  private async obtainImage(engine: Engine, image: string): Promise<void> {
    const started = Date.now();
    if (parseImageRef(image).registry) {
      this.log?.info({ image }, 'pulling the replica\'s image');
      await pullImage(engine, image);
      this.log?.info({ image, ms: Date.now() - started }, 'image pulled');
      return;
    }
    const source = this.config.control?.();
    if (!source) return;
    const archive = await fetchImageArchive(source, image, path.join(this.config.dataDir, 'images'), this.log);
    if (!archive) return;
    try {
      await loadImageArchive(engine, archive);
    } finally {
      await rm(archive, { force: true });
    }
    this.log?.info({ image, ms: Date.now() - started }, 'image loaded from the control plane\'s archive');
  }

  /** Extra binds for an image of another architecture than the machine's (run under qemu-user emulation). */
  private async emulationBinds(engine: Engine, imagePlatform: string): Promise<string[]> {
    if (imagePlatform === (hostPlatform() ?? `${engine.os}/${engine.arch}`)) return [];
    const empty = path.join(this.config.dataDir, 'empty');
    await mkdir(empty, { recursive: true });
    return emulationBinds(empty);
  }

  async start(spec: ReplicaSpec, modelDir: string, port: number, options: StartOptions = {}): Promise<ReplicaHandle> {
    const { signal } = options;
    signal?.throwIfAborted();
    const engine = await this.engine();
    const image = this.imageFor(spec, engine);
    const grpcPort = port + 1;
    const imagePlatform = await this.preflight(engine, image, [port, grpcPort]);
    const emulation = await this.emulationBinds(engine, imagePlatform);
    const dir = this.replicaDir(spec.id);
    await mkdir(dir, { recursive: true });
    const repo = await buildRepository(spec, modelDir, dir);
    const replica = await this.runContainer(engine, spec, {
      Image: image,
      Cmd: ['serve', '--model-repository', MODELS_MOUNT, '--host', '0.0.0.0', '--http-port', String(port), '--grpc-port', String(grpcPort), '--no-watch'],
      Env: [`TERN_REPLICA_ID=${spec.id}`],
      Labels: this.labels(spec, 'model', port, grpcPort),
      StopSignal: 'SIGTERM',
      HostConfig: { NetworkMode: 'host', Binds: [`${repo}:${MODELS_MOUNT}:ro`, ...emulation] },
    }, port, grpcPort);
    const url = `http://127.0.0.1:${port}/v2/models/${encodeURIComponent(spec.deployment)}/ready`;
    await this.waitReady(replica, spec.id, () => probeReady(url), `GET ${url}`, signal);
    return replica;
  }

  async startWorkload(spec: WorkloadReplicaSpec, options: StartOptions = {}): Promise<ReplicaHandle> {
    const { signal } = options;
    signal?.throwIfAborted();
    const engine = await this.engine();
    const ports = hostPorts(spec.workload);
    await this.preflight(engine, spec.workload.image, ports);
    const { HostConfig, ...rest } = workloadOptions(spec.workload);
    const replica = await this.runContainer(engine, spec, { ...rest, Labels: this.labels(spec, 'workload', ports[0] ?? 0), HostConfig }, ports[0] ?? 0, undefined);
    // Ready: running, and accepting connections on every TCP port it publishes (UDP cannot be probed this way).
    const tcp = spec.workload.ports.filter((p) => p.protocol === 'tcp').flatMap((p) => hostPorts({ network: spec.workload.network, ports: [p] }));
    const probe = async () => (await Promise.all(tcp.map(accepts))).every(Boolean);
    await this.waitReady(replica, spec.id, probe, tcp.length ? `TCP port ${tcp.join(', ')}` : 'running', signal);
    return replica;
  }

  /** Creates and starts the replica's container with its limits and restart policy `no`; a failure leaves no container behind. */
  private async runContainer(engine: Engine, spec: WorkloadReplicaSpec | ReplicaSpec, options: Docker.ContainerCreateOptions & { HostConfig: Docker.HostConfig }, port: number, grpcPort: number | undefined): Promise<ContainerReplica> {
    const name = this.containerName(spec.id);
    await engine.docker.getContainer(name).remove({ force: true }).catch(() => undefined); // a leftover of a crash
    let container: Docker.Container;
    try {
      container = await engine.docker.createContainer({
        ...options, name,
        HostConfig: {
          ...options.HostConfig,
          ...cpuReservation(engine, spec.resources.cpu),
          Memory: spec.resources.memory_mb * 1024 * 1024,
          RestartPolicy: { Name: 'no' },
        },
      });
      await container.start();
    } catch (err) {
      await engine.docker.getContainer(name).remove({ force: true }).catch(() => undefined);
      throw new Error(`cannot start the container for ${spec.deployment}: ${engineMessage(err)}`);
    }
    const info = await container.inspect();
    const replica = new ContainerReplica(container, this.exits(engine).exited(container.id), port, grpcPort, describeLimits(engine, info), info.State.Pid || undefined, this.config.stopGraceMs ?? 5000, this.log);
    this.track(replica);
    this.log?.info({ replica: spec.id, container: container.id.slice(0, 12), image: options.Image, port, limits: replica.limits }, 'replica container started');
    return replica;
  }

  private track(replica: ContainerReplica): void {
    this.running.add(replica);
    replica.onExit(() => this.running.delete(replica));
  }

  /** Polls `probe` until it passes; a container that exits first, or a timeout, fails the start (and stops the container). */
  private async waitReady(replica: ContainerReplica, id: string, probe: () => Promise<boolean>, what: string, signal?: AbortSignal): Promise<void> {
    const timeoutMs = this.config.readyTimeoutMs ?? 60_000;
    const started = Date.now();
    try {
      for (;;) {
        if (signal?.aborted) throw new Error('start cancelled');
        if (replica.hasExited) {
          const exit = await replica.exitPromise;
          throw new Error(`the container exited (code ${exit.code}) before it was ready: ${exit.lastLines.join(' | ') || 'no output'}`);
        }
        if (await probe()) break;
        if (Date.now() - started > timeoutMs) {
          throw new Error(`not ready after ${Math.round(timeoutMs / 1000)} s (${what}): ${(await replica.lastLines()).join(' | ') || 'no output'}`);
        }
        await new Promise((r) => setTimeout(r, Date.now() - started < 5000 ? 50 : 250));
      }
    } catch (err) {
      await replica.stop(1000);
      throw err;
    }
    this.log?.info({ replica: id, port: replica.port, ms: Date.now() - started }, 'replica container ready');
  }

  /**
   * Containers of a previous run of this agent (by the owner label): running
   * model and workload replicas are handed back to be supervised again; stopped ones are removed.
   */
  async adopt(): Promise<AdoptedReplica[]> {
    const engine = await this.engine();
    const found = await engine.docker.listContainers({ all: true, filters: ownerFilter(this.owner) });
    const adopted: AdoptedReplica[] = [];
    for (const c of found) {
      const l = c.Labels ?? {};
      const container = engine.docker.getContainer(c.Id);
      if (c.State !== 'running' || (l[LABELS.kind] !== 'model' && l[LABELS.kind] !== 'workload') || !l[LABELS.replica]) {
        await container.remove({ force: true }).catch(() => undefined);
        continue;
      }
      const info = await container.inspect();
      const grpcPort = l[LABELS.grpcPort] ? Number(l[LABELS.grpcPort]) : undefined;
      const replica = new ContainerReplica(container, this.exits(engine).exited(c.Id), Number(l[LABELS.port]), grpcPort, describeLimits(engine, info), info.State.Pid || undefined, this.config.stopGraceMs ?? 5000, this.log);
      this.track(replica);
      adopted.push({ replicaId: l[LABELS.replica], generation: Number(l[LABELS.generation]), handle: replica });
    }
    if (adopted.length) this.log?.info({ containers: adopted.map((a) => a.replicaId) }, 'adopted running replica containers');
    return adopted;
  }

  async remove(replicaId: string): Promise<void> {
    if (this.engineConn) {
      const engine = await this.engine();
      await engine.docker.getContainer(this.containerName(replicaId)).remove({ force: true }).catch((err: unknown) => {
        if (!isNotFound(err)) this.log?.warn({ replica: replicaId, err: engineMessage(err) }, 'cannot remove the container');
      });
    }
    await rm(this.replicaDir(replicaId), { recursive: true, force: true });
  }

  /** Stops every container this driver runs (the agent's shutdown leaves them running instead: see outlivesAgent). */
  async stopAll(graceMs?: number): Promise<void> {
    await Promise.all([...this.running].map((r) => r.stop(graceMs)));
  }

  /**
   * Usage of the app containers on this engine (tern run, tern compose):
   * CPU from each one's own counter between two heartbeats.
   */
  async appStats(): Promise<ContainerStats[]> {
    const engine = await this.engine();
    const list = await engine.docker.listContainers({ all: false, filters: { label: [`${LABELS.kind}=app`] } });
    const seen = new Set<string>();
    const out = await Promise.all(list.map(async (c): Promise<ContainerStats> => {
      seen.add(c.Id);
      const base = { name: (c.Names?.[0] ?? c.Id).replace(/^\//, ''), image: c.Image, state: c.State };
      const raw = (await engine.docker.getContainer(c.Id).stats({ stream: false, 'one-shot': true } as { stream: false }).catch(() => undefined)) as unknown as EngineStats | undefined;
      if (!raw) return base;
      const { usage, sample } = containerUsage(raw, this.appSamples.get(c.Id));
      if (sample) this.appSamples.set(c.Id, sample);
      return usage ? { ...base, cpu_percent: usage.cpu_percent, memory_bytes: usage.rss_bytes, ...(usage.net_rx_bytes !== undefined ? { net_rx_bytes: usage.net_rx_bytes, net_tx_bytes: usage.net_tx_bytes } : {}) } : base;
    }));
    for (const id of this.appSamples.keys()) if (!seen.has(id)) this.appSamples.delete(id);
    return out;
  }

  /** Lets go of the engine's event stream (the containers keep running: see outlivesAgent). */
  async close(): Promise<void> {
    this.exitWatch?.close();
    this.exitWatch = undefined;
  }
}

registerDriver('container', (context) => new ContainerDriver(context));
