/** `tern compose up|down` and `tern run`: app workloads on a container engine of this node. */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseCompose, type ComposeProject } from '../containers/compose.js';
import { composeDown, composeUp } from '../containers/compose-runner.js';
import { connectEngine } from '../containers/engine.js';

export interface RunFlags { name?: string; port?: string[]; env?: string[]; volume?: string[]; cpus?: number; memory?: string; entrypoint?: string; engine?: string }

function report(project: ComposeProject, started: { service: string; name: string }[]): void {
  for (const w of project.workloads) {
    const names = started.filter((s) => s.service === w.service).map((s) => s.name);
    process.stdout.write(`${w.service}: ${names.join(', ') || 'no replicas'}${w.ports.length ? ` (port ${w.ports.join(', ')})` : ''}\n`);
  }
  process.stdout.write(`project ${project.name} is up: ${started.length} containers\n`);
}

export async function composeUpCommand(file: string, f: { project?: string; engine?: string }): Promise<void> {
  const text = await readFile(file, 'utf8').catch(() => {
    throw new Error(`compose file '${file}' does not exist`);
  });
  let project: ComposeProject;
  try {
    project = parseCompose(text, f.project ?? path.basename(path.dirname(path.resolve(file))).toLowerCase().replace(/[^a-z0-9_.-]/g, '-'));
  } catch (err) {
    throw new Error(`${file}: ${(err as Error).message}`);
  }
  if (f.project) project.name = f.project;
  const engine = await connectEngine(f.engine);
  report(project, await composeUp(engine, project, { onProgress: (m) => process.stderr.write(`${m}\n`) }));
}

export async function composeDownCommand(f: { project: string; engine?: string }): Promise<void> {
  const engine = await connectEngine(f.engine);
  const n = await composeDown(engine, f.project);
  process.stdout.write(`project ${f.project}: ${n} containers removed\n`);
}

/** `tern run IMAGE [-- command...]`: a project of one service, named after --name. */
export async function runCommand(image: string, command: string[], f: RunFlags): Promise<void> {
  const name = f.name ?? image.split('/').pop()!.split(':')[0].toLowerCase().replace(/[^a-z0-9_.-]/g, '-');
  const service = {
    image,
    ...(command.length ? { command } : {}),
    ...(f.entrypoint ? { entrypoint: [f.entrypoint] } : {}),
    ...(f.port?.length ? { ports: f.port } : {}),
    ...(f.env?.length ? { environment: f.env } : {}),
    ...(f.volume?.length ? { volumes: f.volume } : {}),
    ...(f.cpus || f.memory ? { deploy: { resources: { limits: { ...(f.cpus ? { cpus: f.cpus } : {}), ...(f.memory ? { memory: f.memory } : {}) } } } } : {}),
  };
  const project = parseCompose(JSON.stringify({ name, services: { [name]: service } }), name);
  const engine = await connectEngine(f.engine);
  report(project, await composeUp(engine, project));
}
