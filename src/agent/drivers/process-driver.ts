/**
 * The `process` runtime: one `tern serve` child process per replica.
 *
 *   <dataDir>/replicas/<replica>/repo/<deployment>/<version>/model.onnx   hard links into the model cache
 *   <dataDir>/replicas/<replica>/repo/<deployment>/config.json            spec.config (or the artifact's), named for the deployment
 *   <dataDir>/replicas/<replica>/stdout.log, stderr.log, pid
 *
 * The child serves the model under the deployment's name on the given HTTP port
 * (gRPC on the next port when free), is ready once
 * `GET /v2/models/<deployment>/ready` answers 200, runs in a cgroup with the
 * spec's CPU and memory limits where the machine allows (else its status says
 * why not), and stops itself when the agent goes away (parent-watch.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Logger } from 'pino';
import type { ReplicaSpec } from '../../protocol/fleet.js';
import { createReplicaCgroup, detectCgroups, removeStaleReplicaCgroups, type CgroupSupport, type ReplicaCgroup } from '../cgroups.js';
import { MODEL_FILE } from '../model-cache.js';
import { compiledScript, SCRIPTS } from '../scripts.js';
import { STATE_FILES } from '../state-files.js';
import { processStats } from '../stats.js';
import {
  ExitNotice, registerDriver, replicaDirName,
  type DriverContext, type ReplicaExit, type ReplicaHandle, type RuntimeDriver, type StartOptions,
} from './driver.js';
import { buildRepository } from './replica-repository.js';

export interface ProcessDriverConfig extends DriverContext {
  /** How long a replica may take to become ready. */
  readyTimeoutMs?: number;
  /** Default grace period between SIGTERM and SIGKILL. */
  stopGraceMs?: number;
  /** Address the replicas listen on. */
  host?: string;
  /** Rotate a replica's log files beyond this size (checked at each start). */
  maxLogBytes?: number;
  /** Use cgroups for limits when the machine allows (default true). */
  cgroups?: boolean;
}

const LOG_LINES = 12;

async function isPortFree(port: number, host = '0.0.0.0'): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen({ port: 0, host: '0.0.0.0' }, () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
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

async function tail(file: string, lines: number): Promise<string[]> {
  try {
    const fh = await open(file, 'r');
    try {
      const { size } = await fh.stat();
      const len = Math.min(size, 16 * 1024);
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, size - len);
      return buf.toString('utf8').split('\n').map((l) => l.trimEnd()).filter(Boolean).slice(-lines);
    } finally {
      await fh.close();
    }
  } catch {
    return [];
  }
}

async function rotate(file: string, maxBytes: number): Promise<void> {
  const size = await stat(file).then((s) => s.size, () => 0);
  if (size > maxBytes) await rename(file, `${file}.1`).catch(() => undefined);
}

class ProcessReplica implements ReplicaHandle {
  readonly pid: number;
  private readonly exit = new ExitNotice();
  private readonly exitPromise: Promise<ReplicaExit>;
  private stopRequested = false;
  private stopping: Promise<void> | undefined;

  constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    readonly grpcPort: number,
    readonly limits: string,
    private readonly dir: string,
    private readonly cgroup: ReplicaCgroup | undefined,
    private readonly defaultGraceMs: number,
    private readonly onGone: () => void,
  ) {
    this.pid = child.pid!;
    this.exitPromise = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        void (async () => {
          const lastLines = await this.lastLines();
          await this.cgroup?.remove().catch(() => undefined);
          await rm(path.join(dir, 'pid'), { force: true });
          const exited: ReplicaExit = { code, signal, requested: this.stopRequested, lastLines };
          this.onGone();
          resolve(exited);
          this.exit.settle(exited);
        })();
      });
    });
  }

  get hasExited(): boolean {
    return this.exit.value !== undefined || this.child.exitCode !== null || this.child.signalCode !== null;
  }

  wait(): Promise<ReplicaExit> {
    return this.exitPromise;
  }

  async lastLines(): Promise<string[]> {
    const err = await tail(path.join(this.dir, 'stderr.log'), LOG_LINES);
    if (err.length > 0) return err;
    return tail(path.join(this.dir, 'stdout.log'), LOG_LINES / 2);
  }

  onExit(cb: (exit: ReplicaExit) => void): void {
    this.exit.onExit(cb);
  }

  stop(graceMs = this.defaultGraceMs): Promise<void> {
    this.stopRequested = true;
    this.stopping ??= (async () => {
      if (!this.hasExited) {
        this.child.kill('SIGTERM');
        const forced = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
        await this.exitPromise;
        clearTimeout(forced);
      }
      await this.exitPromise;
    })();
    return this.stopping;
  }

  /** Synchronous last resort when the agent process exits. */
  killNow(): void {
    if (!this.hasExited) this.child.kill('SIGKILL');
  }

  async stats() {
    if (this.hasExited) return undefined;
    return processStats(this.pid);
  }
}

export class ProcessDriver implements RuntimeDriver {
  readonly name = 'process' as const;
  private readonly replicasDir: string;
  private readonly running = new Set<ProcessReplica>();
  private cgroupSupport: Promise<CgroupSupport> | undefined;
  private readonly log: Logger | undefined;
  private readonly onProcessExit = () => {
    for (const r of this.running) r.killNow();
  };

  constructor(private readonly config: ProcessDriverConfig) {
    this.replicasDir = path.join(config.dataDir, STATE_FILES.replicas);
    this.log = config.log;
    process.on('exit', this.onProcessExit);
  }

  private cgroups(): Promise<CgroupSupport> {
    if (this.config.cgroups === false) return Promise.resolve({ kind: 'none', reason: 'cgroups are disabled in the agent configuration' });
    this.cgroupSupport ??= detectCgroups();
    return this.cgroupSupport;
  }

  /** Describes how limits apply to this driver's replicas on this machine. */
  async limitsSupport(): Promise<CgroupSupport> {
    return this.cgroups();
  }

  private replicaDir(replicaId: string): string {
    return path.join(this.replicasDir, replicaDirName(replicaId));
  }

  async start(spec: ReplicaSpec, modelDir: string, port: number, options: StartOptions = {}): Promise<ReplicaHandle> {
    const { signal } = options;
    signal?.throwIfAborted();
    if (!/^[1-9][0-9]*$/.test(spec.version)) throw new Error(`version '${spec.version}' is not a positive integer, which tern serve needs as a version directory`);
    await stat(path.join(modelDir, MODEL_FILE)).catch(() => {
      throw new Error(`${MODEL_FILE} is missing from the cached model ${modelDir}`);
    });
    const dir = this.replicaDir(spec.id);
    await mkdir(dir, { recursive: true });
    const repo = await buildRepository(spec, modelDir, dir);
    const grpcPort = (await isPortFree(port + 1)) ? port + 1 : await freePort();

    const maxLog = this.config.maxLogBytes ?? 5 * 1024 * 1024;
    const outFile = path.join(dir, 'stdout.log');
    const errFile = path.join(dir, 'stderr.log');
    await rotate(outFile, maxLog);
    await rotate(errFile, maxLog);
    await writeFile(errFile, `--- ${new Date().toISOString()} starting ${spec.deployment} (${spec.model}:${spec.version}, generation ${spec.generation}) on port ${port}\n`, { flag: 'a' });

    let cgroup: ReplicaCgroup | undefined;
    let limits: string;
    const support = await this.cgroups();
    if (support.kind === 'none') {
      limits = `limits not enforced: ${support.reason}`;
    } else {
      try {
        cgroup = await createReplicaCgroup(support, spec.id, spec.resources);
        limits = `limits enforced: ${cgroup.description}`;
      } catch (err) {
        limits = `limits not enforced: cannot create the replica's cgroup (${(err as Error).message})`;
      }
    }

    const args = [
      '--import', pathToFileURL(compiledScript(SCRIPTS.parentWatch)).href,
      compiledScript(SCRIPTS.cli), 'serve',
      '--model-repository', repo,
      '--host', this.config.host ?? '0.0.0.0',
      '--http-port', String(port),
      '--grpc-port', String(grpcPort),
      '--no-watch',
    ];
    const out = openSync(outFile, 'a');
    const err = openSync(errFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, args, { cwd: dir, stdio: ['ignore', out, err, 'ipc'], env: { ...process.env, TERN_REPLICA_ID: spec.id } });
    } finally {
      closeSync(out);
      closeSync(err);
    }
    child.channel?.unref();
    child.unref();
    const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
    if (child.pid === undefined) {
      await cgroup?.remove().catch(() => undefined);
      throw new Error(`cannot start tern serve: ${(await spawnError).message}`);
    }
    if (cgroup) {
      try {
        await cgroup.add(child.pid);
      } catch (e) {
        limits = `limits not enforced: cannot move the replica into its cgroup (${(e as Error).message})`;
        await cgroup.remove().catch(() => undefined);
        cgroup = undefined;
      }
    }
    await writeFile(path.join(dir, 'pid'), `${child.pid}\n`);
    const replica = new ProcessReplica(child, port, grpcPort, limits, dir, cgroup, this.config.stopGraceMs ?? 5000, () => this.running.delete(replica));
    this.running.add(replica);
    this.log?.info({ replica: spec.id, pid: child.pid, port, grpcPort, limits }, 'replica process started');

    const readyUrl = `http://127.0.0.1:${port}/v2/models/${encodeURIComponent(spec.deployment)}/ready`;
    const timeoutMs = this.config.readyTimeoutMs ?? 60_000;
    const started = Date.now();
    let aborted = false;
    const onAbort = () => {
      aborted = true;
    };
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      while (true) {
        if (aborted) throw new Error('start cancelled');
        if (replica.hasExited) {
          const exit = await replica.wait();
          throw new Error(`tern serve exited (${exit.signal ?? `code ${exit.code}`}) before it was ready: ${exit.lastLines.join(' | ') || 'no output'}`);
        }
        if (await probeReady(readyUrl)) break;
        if (Date.now() - started > timeoutMs) {
          const lines = await replica.lastLines();
          throw new Error(`not ready after ${Math.round(timeoutMs / 1000)} s (GET ${readyUrl}): ${lines.join(' | ') || 'no output'}`);
        }
        await new Promise((r) => setTimeout(r, Date.now() - started < 5000 ? 100 : 250));
      }
    } catch (e) {
      await replica.stop(1000);
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    this.log?.info({ replica: spec.id, port, ms: Date.now() - started }, 'replica ready');
    return replica;
  }

  /**
   * Replicas of a previous agent run: parent-watch.ts stops them when their
   * agent dies, so normally none are left; any that are (hung, or started by a
   * build without the watch) are killed, and their cgroups removed. A process
   * replica cannot be re-adopted: its exit could no longer be observed.
   */
  async adopt(): Promise<[]> {
    let names: string[] = [];
    try {
      names = await readdir(this.replicasDir);
    } catch {
      names = [];
    }
    for (const name of names) {
      const dir = path.join(this.replicasDir, name);
      const pid = Number((await readFile(path.join(dir, 'pid'), 'utf8').catch(() => '')).trim());
      if (pid > 0) {
        const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
        if (cmdline.includes(path.join(dir, 'repo'))) {
          this.log?.warn({ replica: name, pid }, 'killing a replica process left over from a previous agent run');
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // gone already
          }
          for (let i = 0; i < 50 && (await stat(`/proc/${pid}`).then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 20));
        }
        await rm(path.join(dir, 'pid'), { force: true });
      }
    }
    const removed = await removeStaleReplicaCgroups(await this.cgroups());
    if (removed.length) this.log?.info({ groups: removed }, 'removed cgroups of replicas from a previous agent run');
    return [];
  }

  async remove(replicaId: string): Promise<void> {
    await rm(this.replicaDir(replicaId), { recursive: true, force: true });
  }

  async close(graceMs?: number): Promise<void> {
    await Promise.all([...this.running].map((r) => r.stop(graceMs)));
    process.off('exit', this.onProcessExit);
  }
}

registerDriver('process', (context) => new ProcessDriver(context));
