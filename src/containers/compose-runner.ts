/**
 * Brings a compose project (compose.ts) up on one engine: every image and
 * every published port is checked before anything is created; services start
 * in dependency order, each once the services it depends on run and accept
 * connections on their ports; a failure removes what this run created, so a
 * refused project leaves nothing behind. Containers carry the project and
 * service in their labels, which is how `down` finds them.
 */
import type Docker from 'dockerode';
import type { ComposeProject, Workload } from './compose.js';
import { engineMessage, type Engine } from './engine.js';
import { checkPlatform, inspectImage } from './images.js';
import { LABELS } from './labels.js';
import { cpuReservation } from './limits.js';
import { lastLines } from './logs.js';
import { hostPlatform } from './platform.js';
import { accepts, portFree } from './port-checks.js';
import { parseImageRef, pullImage } from './registry.js';

export const COMPOSE_LABELS = { project: 'tern.compose.project', service: 'tern.compose.service' } as const;

export interface UpOptions {
  readyTimeoutMs?: number;
  onProgress?: (message: string) => void;
}

export interface StartedContainer { service: string; name: string; id: string }

export function projectFilter(project: string): { label: string[] } {
  return { label: [`${COMPOSE_LABELS.project}=${project}`] };
}

/** Images present (pulled when their reference names a registry) and for this node; ports free. */
async function preflight(engine: Engine, project: ComposeProject): Promise<void> {
  const platform = hostPlatform() ?? `${engine.os}/${engine.arch}`;
  for (const image of new Set(project.workloads.map((w) => w.image))) {
    let facts = await inspectImage(engine, image);
    if (!facts && parseImageRef(image).registry) {
      await pullImage(engine, image);
      facts = await inspectImage(engine, image);
    }
    if (!facts) throw new Error(`image ${image} is not on the container engine (${engine.kind} at ${engine.url}) and names no registry to pull it from`);
    checkPlatform(image, facts, [platform]);
  }
  for (const w of project.workloads) {
    for (const port of w.ports) {
      if (!(await portFree(port))) throw new Error(`port ${port} (service ${w.service}) is already in use on this node`);
    }
  }
}

function createOptions(project: ComposeProject, w: Workload, index: number, engine: Engine): Docker.ContainerCreateOptions {
  // Host networking: every service of the project is reached on this node.
  const hosts = project.workloads.map((s) => `${s.service}:127.0.0.1`);
  return {
    name: `${project.name}-${w.service}-${index + 1}`,
    Image: w.image,
    ...(w.entrypoint ? { Entrypoint: w.entrypoint } : {}),
    ...(w.command ? { Cmd: w.command } : {}),
    Env: w.env,
    ...(w.workingDir ? { WorkingDir: w.workingDir } : {}),
    Labels: { [LABELS.kind]: 'app', [COMPOSE_LABELS.project]: project.name, [COMPOSE_LABELS.service]: w.service },
    HostConfig: {
      NetworkMode: 'host',
      Binds: w.binds,
      ExtraHosts: hosts,
      RestartPolicy: { Name: 'no' },
      ...(w.cpus > 0 ? cpuReservation(engine, w.cpus) : {}),
      ...(w.memoryBytes > 0 ? { Memory: w.memoryBytes } : {}),
    },
  };
}

/** Waits until the container runs and its published ports accept connections; throws with its last lines if it stops. */
async function waitReady(container: Docker.Container, w: Workload, timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const info = await container.inspect();
    if (!info.State.Running) {
      const logs = (await container.logs({ stdout: true, stderr: true, tail: 5 }).catch(() => Buffer.alloc(0))) as unknown as Buffer;
      throw new Error(`service ${w.service} exited (code ${info.State.ExitCode}) before it was ready: ${lastLines(logs, 5).join(' | ') || 'no output'}`);
    }
    if ((await Promise.all(w.ports.map(accepts))).every(Boolean)) return;
    if (Date.now() > end) throw new Error(`service ${w.service} does not accept connections on port ${w.ports.join(', ')} after ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function composeUp(engine: Engine, project: ComposeProject, o: UpOptions = {}): Promise<StartedContainer[]> {
  const existing = await engine.docker.listContainers({ all: true, filters: projectFilter(project.name) });
  if (existing.length) throw new Error(`project ${project.name} is already up (${existing.length} containers); take it down first: tern compose down --project ${project.name}`);
  await preflight(engine, project);
  const started: StartedContainer[] = [];
  try {
    for (const w of project.workloads) {
      const containers: Docker.Container[] = [];
      for (let i = 0; i < w.replicas; i++) {
        const options = createOptions(project, w, i, engine);
        let c: Docker.Container;
        try {
          c = await engine.docker.createContainer(options);
          started.push({ service: w.service, name: options.name!, id: c.id });
          await c.start();
        } catch (err) {
          throw new Error(`cannot start service ${w.service}: ${engineMessage(err)}`);
        }
        containers.push(c);
      }
      await Promise.all(containers.map((c) => waitReady(c, w, o.readyTimeoutMs ?? 60_000)));
      o.onProgress?.(`${w.service}: ${w.replicas} running${w.ports.length ? ` on port ${w.ports.join(', ')}` : ''}`);
    }
  } catch (err) {
    await Promise.all(started.map((s) => engine.docker.getContainer(s.id).remove({ force: true }).catch(() => undefined)));
    throw err;
  }
  return started;
}

/** Removes every container of `project`; resolves with how many there were. */
export async function composeDown(engine: Engine, project: string, graceS = 5): Promise<number> {
  const list = await engine.docker.listContainers({ all: true, filters: projectFilter(project) });
  await Promise.all(list.map(async (c) => {
    const container = engine.docker.getContainer(c.Id);
    await container.stop({ t: graceS }).catch(() => undefined);
    await container.remove({ force: true }).catch(() => undefined);
  }));
  return list.length;
}
