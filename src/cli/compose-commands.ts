/**
 * `tern compose up|down` and `tern run`: app workloads on a container engine
 * of this node, or with --fleet as container deployments through the control
 * plane (fleet-workloads.ts).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseCompose, type ComposeProject } from '../containers/compose.js';
import { composeDown, composeUp } from '../containers/compose-runner.js';
import { connectEngine } from '../containers/engine.js';

export interface RunFlags {
  name?: string; port?: string[]; env?: string[]; volume?: string[]; cpus?: number; memory?: string; entrypoint?: string; engine?: string;
  /** Through the control plane: a container deployment instead of a container on this node's engine. */
  fleet?: boolean; replicas?: number; selector?: string[];
}

export interface ComposeFlags { project?: string; engine?: string; fleet?: boolean; timeout?: number }

function report(project: ComposeProject, started: { service: string; name: string }[]): void {
  for (const w of project.workloads) {
    const names = started.filter((s) => s.service === w.service).map((s) => s.name);
    process.stdout.write(`${w.service}: ${names.join(', ') || 'no replicas'}${w.ports.length ? ` (port ${w.ports.join(', ')})` : ''}\n`);
  }
  process.stdout.write(`project ${project.name} is up: ${started.length} containers\n`);
}

/** Reads and checks a compose file; the project is named by --project, else the file's name: key, else its folder. */
export async function loadProject(file: string, f: ComposeFlags): Promise<ComposeProject> {
  const text = await readFile(file, 'utf8').catch(() => {
    throw new Error(`compose file '${file}' does not exist`);
  });
  let project: ComposeProject;
  try {
    project = parseCompose(text, f.project ?? path.basename(path.dirname(path.resolve(file))).toLowerCase().replace(/[^a-z0-9_.-]/g, '-'), { fleet: f.fleet });
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  if (f.project) project.name = f.project;
  return project;
}

export async function composeUpCommand(file: string, f: ComposeFlags): Promise<void> {
  const project = await loadProject(file, f);
  if (f.fleet) return (await import('./fleet-workloads.js')).fleetComposeUp(project, f);
  const engine = await connectEngine(f.engine);
  report(project, await composeUp(engine, project, { onProgress: (m) => process.stderr.write(`${m}\n`) }));
}

export async function composeDownCommand(file: string | undefined, f: ComposeFlags): Promise<void> {
  if (f.fleet) {
    if (!file) throw new Error('compose down --fleet needs the compose FILE: its services name the deployments to remove');
    return (await import('./fleet-workloads.js')).fleetComposeDown(await loadProject(file, f));
  }
  const name = f.project ?? (file ? (await loadProject(file, f)).name : undefined);
  if (!name) throw new Error('compose down needs --project NAME or the compose FILE');
  const engine = await connectEngine(f.engine);
  const n = await composeDown(engine, name);
  process.stdout.write(`project ${name}: ${n} containers removed\n`);
}

/** `tern run` flags as a project of one service named after --name (checked like a compose file). */
export function runProject(image: string, command: string[], f: RunFlags): ComposeProject {
  const name = f.name ?? image.split('/').pop()!.split(':')[0].toLowerCase().replace(/[^a-z0-9_.-]/g, '-');
  const service = {
    image,
    ...(command.length ? { command } : {}),
    ...(f.entrypoint ? { entrypoint: [f.entrypoint] } : {}),
    ...(f.port?.length ? { ports: f.port } : {}),
    ...(f.env?.length ? { environment: f.env } : {}),
    ...(f.volume?.length ? { volumes: f.volume } : {}),
    ...(f.replicas !== undefined ? { deploy: { replicas: f.replicas } } : {}),
  };
  if (f.cpus || f.memory) {
    Object.assign(service, { deploy: { ...service.deploy, resources: { limits: { ...(f.cpus ? { cpus: f.cpus } : {}), ...(f.memory ? { memory: f.memory } : {}) } } } });
  }
  return parseCompose(JSON.stringify({ name, services: { [name]: service } }), name, { fleet: f.fleet });
}

/** `tern run IMAGE [-- command...]`: one app container here, or with --fleet a container deployment. */
export async function runCommand(image: string, command: string[], f: RunFlags): Promise<void> {
  const project = runProject(image, command, f);
  if (f.fleet) return (await import('./fleet-workloads.js')).fleetRun(project.workloads[0], f);
  const engine = await connectEngine(f.engine);
  report(project, await composeUp(engine, project));
}
