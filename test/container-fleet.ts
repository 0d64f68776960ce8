/**
 * One fleet node with a container engine, for the container fleet tests: a
 * network namespace on its own bridge, Podman's service inside it (so
 * containers with host networking share the node's network), the model-server
 * image loaded, a control plane in this process, and an agent joined from the
 * namespace. Tests that use it skip with a printed reason without root,
 * network namespaces or Podman, and fail in CI.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { ownerOf } from '../src/agent/drivers/container-driver.js';
import { LABELS } from '../src/containers/labels.js';
import { createJoinToken } from '../src/control/auth/accounts.js';
import { startControlPlane, type ControlPlane } from '../src/control/control-plane.js';
import { ensureServeImage, removeOwned, requireEngine, startEngine, type TestEngine } from './container-engines.js';
import { removeDir, waitFor } from './helpers.js';
import { createTestNetwork, netnsUnavailable, type TestNetwork } from './netns.js';

const CLI = path.resolve('dist/cli/main.js');

export interface CliResult { code: number; stdout: string; stderr: string }

/** Runs the built CLI with extra environment (e.g. TERN_CONFIG for its login). */
export function runTern(env: NodeJS.ProcessEnv, ...args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Whether a container fleet test can run here; outside CI it skips with the reason printed, in CI a missing part fails it. */
export function containerFleetEnabled(what: string): boolean {
  const why = netnsUnavailable();
  if (why) {
    if (process.env.CI) throw new Error(`the ${what} must run in CI, but: ${why}`);
    console.warn(`SKIPPED ${what}: ${why}`);
    return false;
  }
  return requireEngine('podman', what);
}

export interface ContainerFleetOptions {
  /** Names the namespace (`<prefix>1`), bridge and engine; keeps concurrent tests apart. */
  prefix: string;
  /** The bridge's 10.<subnet>.0.0/24. */
  subnet: number;
  /** The agent's replica port range, e.g. 25100-25199. */
  replicaPorts: string;
  adminPassword: string;
  /** Run the node's gateway (port 8000 in the namespace). */
  gateway: boolean;
}

export class ContainerFleet {
  agent: ChildProcess | undefined;
  private cpClosed = false;

  private constructor(
    readonly o: ContainerFleetOptions, readonly net: TestNetwork, readonly engine: TestEngine, readonly image: string,
    readonly cp: ControlPlane, readonly dataDir: string,
  ) {}

  static async start(o: ContainerFleetOptions): Promise<ContainerFleet> {
    const net = createTestNetwork(o.prefix, o.subnet, 1);
    const dataDir = mkdtempSync(path.join(tmpdir(), `${o.prefix}-fleet-`));
    let engine: TestEngine | undefined;
    try {
      engine = await startEngine('podman', `${o.prefix}-fleet`, net.nodes[0].name);
      const image = (await ensureServeImage(engine.engine)).tag;
      const cp = await startControlPlane({
        dataDir: path.join(dataDir, 'control'), host: '0.0.0.0', port: 0, mqttPort: 0, advertiseHost: net.hostAddress, adminPassword: o.adminPassword,
        log: pino({ level: process.env.TERN_TEST_LOG ?? 'silent' }),
      });
      const fleet = new ContainerFleet(o, net, engine, image, cp, dataDir);
      fleet.startAgent(createJoinToken(cp.store, 600).token);
      if (!(await waitFor(() => cp.store.nodes.list().some((n) => n.state === 'ready'), 40_000))) {
        await fleet.close();
        throw new Error('the agent did not join in 40 s');
      }
      return fleet;
    } catch (err) {
      await engine?.stop().catch(() => undefined);
      net.teardown();
      removeDir(dataDir);
      throw err;
    }
  }

  get node(): { name: string; address: string } {
    return this.net.nodes[0];
  }

  get agentDir(): string {
    return path.join(this.dataDir, this.node.name);
  }

  /** Starts the agent in the namespace (with a join token the first time; it rejoins with its identity after). */
  startAgent(token?: string): ChildProcess {
    const args = [CLI, 'agent', '--control', `http://${this.net.hostAddress}:${this.cp.port}`, '--data-dir', this.agentDir,
      '--address', this.node.address, '--replica-ports', this.o.replicaPorts, '--container-engine', this.engine.url,
      ...(this.o.gateway ? [] : ['--no-gateway']), ...(token ? ['--token', token] : [])];
    const child = this.net.spawnIn(this.node.name, process.execPath, args, { TERN_LOG_LEVEL: process.env.TERN_TEST_LOG ? 'info' : 'warn' });
    child.stderr?.on('data', (d: Buffer) => process.env.TERN_TEST_LOG && process.stderr.write(`[agent] ${d}`));
    child.stdout?.on('data', (d: Buffer) => process.env.TERN_TEST_LOG && process.stdout.write(`[agent] ${d}`));
    this.agent = child;
    return child;
  }

  /** SIGTERM: the agent leaves its containers running (they outlive it). */
  async stopAgent(): Promise<void> {
    const agent = this.agent;
    if (!agent) return;
    const exited = new Promise((resolve) => agent.once('exit', resolve));
    agent.kill('SIGTERM');
    await exited;
    this.agent = undefined;
  }

  async closeControlPlane(): Promise<void> {
    this.cpClosed = true;
    await this.cp.close();
  }

  /** This agent's containers, optionally only those with the given tern labels. */
  ownedContainers(labels: Record<string, string> = {}) {
    const label = [`${LABELS.owner}=${ownerOf(this.agentDir)}`, ...Object.entries(labels).map(([k, v]) => `${k}=${v}`)];
    return this.engine.engine.docker.listContainers({ all: true, filters: { label } });
  }

  /** Starts a container labelled as this agent's for a replica no desired state names (an orphan the agent must remove). */
  async startStray(options: { kind: 'model' | 'workload'; replica: string; labels?: Record<string, string>; Entrypoint?: string[]; Cmd: string[] }): Promise<void> {
    const stray = await this.engine.engine.docker.createContainer({
      Image: this.image, ...(options.Entrypoint ? { Entrypoint: options.Entrypoint } : {}), Cmd: options.Cmd,
      Labels: { [LABELS.owner]: ownerOf(this.agentDir), [LABELS.kind]: options.kind, [LABELS.replica]: options.replica, [LABELS.generation]: '1', ...options.labels },
      HostConfig: { NetworkMode: 'host', RestartPolicy: { Name: 'no' } },
    });
    await stray.start();
  }

  async close(): Promise<void> {
    this.agent?.kill('SIGKILL');
    await removeOwned(this.engine.engine, ownerOf(this.agentDir)).catch(() => undefined);
    if (!this.cpClosed) await this.cp.close();
    await this.engine.stop();
    this.net.teardown();
    removeDir(this.dataDir);
  }
}
