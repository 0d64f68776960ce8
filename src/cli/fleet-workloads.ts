/* eslint-disable @typescript-eslint/no-explicit-any -- API replies are only read for printing and progress here; their schemas live in the API. */
/**
 * `tern run --fleet` and `tern compose up|down --fleet`: app workloads as
 * container deployments through the control plane, one per Compose service
 * (named <project>-<service>), created in depends_on order, each once the
 * services before it have every replica ready. A failure removes the
 * deployments this run created, so a refused project leaves nothing behind.
 */
import type { ComposeProject, Workload } from '../containers/compose.js';
import { ApiClient, loadCredentials } from './api-client.js';
import type { ComposeFlags, RunFlags } from './compose-commands.js';
import { parseSelector } from './fleet-commands.js';

const DEFAULT_TIMEOUT_S = 120;

/** The API body of a container deployment running `w` (host networking: a service's ports are the node's). */
export function deploymentBody(name: string, w: Workload, selector: Record<string, string> = {}): Record<string, unknown> {
  const env = Object.fromEntries(w.env.map((e) => (e.includes('=') ? [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)] : [e, ''])));
  const limited = w.cpus > 0 || w.memoryBytes > 0;
  return {
    kind: 'container', name, image: w.image, replicas: w.replicas,
    ...(w.entrypoint ? { entrypoint: w.entrypoint } : {}),
    ...(w.command ? { command: w.command } : {}),
    env, ports: w.ports.map((container) => ({ container })), volumes: w.binds,
    ...(w.workingDir ? { working_dir: w.workingDir } : {}),
    // Unset limits keep the API's defaults (0.5 core, 256 MB): the scheduler needs a size to place by.
    ...(limited ? { resources: { ...(w.cpus > 0 ? { cpu: w.cpus } : {}), ...(w.memoryBytes > 0 ? { memory_mb: Math.ceil(w.memoryBytes / 2 ** 20) } : {}) } } : {}),
    selector,
  };
}

const deploymentName = (project: ComposeProject, w: Workload) => `${project.name}-${w.service}`;

/** Why a deployment is not ready yet: its replicas' messages, else its newest event (e.g. why it cannot be placed). */
async function whyNotReady(api: ApiClient, name: string, d: any): Promise<string> {
  const messages = (d.replicas ?? []).filter((r: any) => r.state !== 'ready' && r.message).map((r: any) => `${r.id} ${r.state}: ${r.message}`);
  if (messages.length) return messages.join('; ');
  const { events } = await api.get<{ events: { message: string }[] }>(`/events?subject=${encodeURIComponent(`deployment/${name}`)}&limit=1`);
  return events[0]?.message ?? 'no replica placed yet';
}

/** Polls until every desired replica of the current generation is ready; throws with the reason after `timeoutS`. */
async function waitReady(api: ApiClient, name: string, timeoutS: number): Promise<void> {
  const end = Date.now() + timeoutS * 1000;
  for (;;) {
    const d = await api.get<any>(`/deployments/${name}`);
    const ready = (d.replicas as any[]).filter((r) => r.desired === 'run' && r.state === 'ready' && r.generation === d.generation).length;
    if (ready >= d.spec.replicas) return;
    if (Date.now() > end) throw new Error(`deployment ${name} is not ready after ${timeoutS} s (${ready}/${d.spec.replicas} replicas): ${await whyNotReady(api, name, d)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function fleetComposeUp(project: ComposeProject, f: ComposeFlags): Promise<void> {
  const api = new ApiClient(await loadCredentials());
  const created: string[] = [];
  try {
    for (const w of project.workloads) {
      const name = deploymentName(project, w);
      await api.post(`/deployments`, deploymentBody(name, w));
      created.push(name);
      await waitReady(api, name, f.timeout ?? DEFAULT_TIMEOUT_S);
      process.stderr.write(`${w.service}: deployment ${name}, ${w.replicas} ready${w.ports.length ? ` (node port ${w.ports.join(', ')})` : ''}\n`);
    }
  } catch (err) {
    await removeAll(api, created.reverse());
    throw new Error(`${(err as Error).message}${created.length ? `; removed what this run created: ${created.join(', ')}` : ''}`);
  }
  process.stdout.write(`project ${project.name} is up in the fleet: ${created.length} deployments (${created.join(', ')})\n`);
}

/** Deletes deployments (their replicas stop, then they go); unknown ones are skipped. Returns those it removed. */
async function removeAll(api: ApiClient, names: string[]): Promise<string[]> {
  const removed: string[] = [];
  for (const name of names) {
    try {
      await api.request('DELETE', `/deployments/${name}`);
      removed.push(name);
    } catch (err) {
      if (!/\(404\)/.test((err as Error).message)) throw err;
    }
  }
  return removed;
}

/** Removes the project's deployments, dependents first. */
export async function fleetComposeDown(project: ComposeProject): Promise<void> {
  const api = new ApiClient(await loadCredentials());
  const removed = await removeAll(api, project.workloads.map((w) => deploymentName(project, w)).reverse());
  process.stdout.write(`project ${project.name}: ${removed.length} deployments removed from the fleet${removed.length ? ` (${removed.join(', ')})` : ''}\n`);
}

export async function fleetRun(w: Workload, f: RunFlags): Promise<void> {
  const api = new ApiClient(await loadCredentials());
  const d = await api.post<any>('/deployments', deploymentBody(w.service, w, parseSelector(f.selector)));
  process.stdout.write(`deployment ${d.name} created: image ${d.spec.image} x${d.spec.replicas}${w.ports.length ? ` on node port ${w.ports.join(', ')}` : ''}\n`);
}
