/* eslint-disable @typescript-eslint/no-explicit-any -- API replies are only formatted for printing here; their schemas live in the API. */
/** CLI commands that talk to the control plane's REST API. */
import type { Command } from 'commander';
import { ApiClient, formatTable, loadCredentials, saveCredentials } from './api-client.js';
import { pushModel } from './model-push.js';
import { parsePositiveInt } from './options.js';

interface Out { json?: boolean }

async function client(): Promise<ApiClient> {
  return new ApiClient(await loadCredentials());
}

function print(data: unknown, opts: Out, table?: () => string): void {
  process.stdout.write(`${opts.json || !table ? JSON.stringify(data, null, 2) : table()}\n`);
}

function parseLabels(pairs: string[]): Record<string, string | null> {
  const out: Record<string, string | null> = {};
  for (const p of pairs) {
    if (p.endsWith('-') && !p.includes('=')) out[p.slice(0, -1)] = null;
    else {
      const i = p.indexOf('=');
      if (i < 1) throw new Error(`label '${p}' must look like key=value (or key- to remove it)`);
      out[p.slice(0, i)] = p.slice(i + 1);
    }
  }
  return out;
}

/** Selector flags (key=value, node labels to match). */
export function parseSelector(pairs: string[] = []): Record<string, string> {
  return Object.fromEntries(Object.entries(parseLabels(pairs)).filter((e): e is [string, string] => e[1] !== null));
}

/** `model` or `model:version` */
function parseModelRef(ref: string): { model: string; version?: string } {
  const [model, version] = ref.split(':');
  if (!model) throw new Error(`'${ref}' is not MODEL or MODEL:VERSION`);
  return version ? { model, version } : { model };
}

type Action = (...args: any[]) => Promise<void>;

export function registerFleetCommands(program: Command, fail: (e: unknown) => never): void {
  const act = (fn: Action) => async (...args: unknown[]) => { try { await fn(...args); } catch (e) { fail(e); } };

  program.command('login').description('log in to a control plane and remember the token')
    .requiredOption('--url <url>', 'control plane URL, e.g. http://localhost:7000')
    .option('--username <name>', 'user', 'admin')
    .requiredOption('--password <password>', 'password')
    .action(act(async (o: { url: string; username: string; password: string }) => {
      const url = o.url.replace(/\/+$/, '');
      const anon = new ApiClient({ url, token: '' });
      const res = await anon.post<{ token: string; role: string }>('/auth/login', { username: o.username, password: o.password });
      await saveCredentials({ url, token: res.token });
      process.stdout.write(`logged in to ${url} as ${o.username} (${res.role})\n`);
    }));

  const nodes = program.command('nodes').description('nodes of the fleet');
  nodes.command('ls', { isDefault: true }).option('--json').action(act(async (o: Out) => {
    const { nodes: list } = await (await client()).get<{ nodes: any[] }>('/nodes');
    print(list, o, () => formatTable(list.map((n) => ({
      id: n.id, state: n.cordoned && n.state === 'ready' ? 'ready,cordoned' : n.state, arch: n.facts.arch, cpus: n.facts.cpus,
      'mem-mb': Math.round(n.facts.memory_bytes / 2 ** 20), 'cpu%': n.stats?.cpu_percent?.toFixed(0), score: Math.round(n.facts.cpu_score),
      site: n.facts.site, address: n.facts.address,
    })), ['id', 'state', 'arch', 'cpus', 'mem-mb', 'cpu%', 'score', 'site', 'address']));
  }));
  nodes.command('show <id>').option('--json').action(act(async (id: string, o: Out) => print(await (await client()).get(`/nodes/${id}`), { ...o, json: true })));
  nodes.command('label <id> <labels...>').description('key=value sets, key- removes').action(act(async (id: string, labels: string[]) => {
    const n = await (await client()).request<any>('PATCH', `/nodes/${id}/labels`, { labels: parseLabels(labels) });
    process.stdout.write(`${id}: ${JSON.stringify(n.labels)}\n`);
  }));
  for (const action of ['cordon', 'uncordon', 'drain']) {
    nodes.command(`${action} <id>`).action(act(async (id: string) => {
      const n = await (await client()).post<any>(`/nodes/${id}/${action}`);
      process.stdout.write(`${id}: ${n.state}${n.cordoned ? ', cordoned' : ''}\n`);
    }));
  }
  nodes.command('rm <id>').description('remove a node (down, or running no replicas) from the fleet').action(act(async (id: string) => {
    await (await client()).request('DELETE', `/nodes/${id}`);
    process.stdout.write(`${id} removed; its agent's token no longer works\n`);
  }));

  const users = program.command('users').description('users of the control plane (admin)');
  users.command('ls', { isDefault: true }).option('--json').action(act(async (o: Out) => {
    const { users: list } = await (await client()).get<{ users: any[] }>('/users');
    print(list, o, () => formatTable(list.map((u) => ({ username: u.username, role: u.role, created: new Date(u.created_at).toISOString().slice(0, 19) })), ['username', 'role', 'created']));
  }));
  users.command('add <username>').requiredOption('--password <password>', 'at least 8 characters').option('--role <role>', 'admin | viewer', 'viewer')
    .action(act(async (username: string, o: { password: string; role: string }) => {
      const u = await (await client()).post<any>('/users', { username, password: o.password, role: o.role });
      process.stdout.write(`user ${u.username} (${u.role}) created\n`);
    }));
  users.command('passwd <username>').requiredOption('--password <password>', 'the new password').action(act(async (username: string, o: { password: string }) => {
    await (await client()).request('PUT', `/users/${username}/password`, { password: o.password });
    process.stdout.write(`password of ${username} changed\n`);
  }));
  users.command('rm <username>').action(act(async (username: string) => {
    await (await client()).request('DELETE', `/users/${username}`);
    process.stdout.write(`user ${username} removed; their sessions ended\n`);
  }));

  const models = program.commands.find((c) => c.name() === 'models')!;
  models.command('push <name> <path>').description('upload a model version (an .onnx file or a directory)')
    .option('--version <n>', 'version number (default: next)').option('--no-progress', 'no progress bar')
    .action(act(async (name: string, source: string, o: { version?: string; progress: boolean }) => {
      const v = await pushModel(await client(), name, source, { version: o.version, progress: o.progress && process.stderr.isTTY });
      process.stdout.write(`pushed ${v.model} version ${v.version} (sha256 ${v.sha256.slice(0, 12)})\n`);
    }));
  models.command('ls').option('--json').action(act(async (o: Out) => {
    const res = await (await client()).get<any>('/models');
    const list: any[] = res.models ?? res;
    print(list, o, () => formatTable(list, ['name', 'versions', 'latest']));
  }));
  models.command('show <name>').action(act(async (name: string) => print(await (await client()).get(`/models/${name}`), { json: true })));
  models.command('rm <ref>').description('MODEL or MODEL:VERSION').action(act(async (ref: string) => {
    const { model, version } = parseModelRef(ref);
    await (await client()).request('DELETE', version ? `/models/${model}/versions/${version}` : `/models/${model}`);
    process.stdout.write(`removed ${ref}\n`);
  }));

  const image = program.commands.find((c) => c.name() === 'image');
  image?.command('upload <archive>')
    .description('send an image archive to the control plane, for nodes without a registry (chunked, resumable, sha256-verified)')
    .option('--ref <ref>', 'image reference to register it under (default: the archive\'s tag)')
    .option('--no-progress', 'no progress bar')
    .action(act(async (archive: string, o: { ref?: string; progress: boolean }) => {
      const { uploadImage } = await import('./image-upload.js');
      const r = await uploadImage(await client(), archive, { ref: o.ref, progress: o.progress && process.stderr.isTTY === true });
      process.stdout.write(`uploaded ${r.ref} (${r.platform}, ${r.size} bytes, sha256 ${r.sha256.slice(0, 12)})${r.resumedAt > 0 ? `, resumed at byte ${r.resumedAt}` : ''}\n`);
    }));
  image?.command('ls').description('container images the control plane holds').option('--json').action(act(async (o: Out) => {
    const { images } = await (await client()).get<{ images: any[] }>('/images');
    print(images, o, () => formatTable(images.map((i) => ({ ref: i.ref, platform: i.platform, size: i.size, sha256: String(i.sha256).slice(0, 12) })), ['ref', 'platform', 'size', 'sha256']));
  }));

  program.command('deploy <model>').description('deploy MODEL[:VERSION]')
    .option('--name <name>', 'deployment name (default: the model name)')
    .option('--replicas <n>', 'replicas', parsePositiveInt, 1)
    .option('--runtime <runtime>', 'process | container | microvm', 'process')
    .option('--image <ref>', 'container runtime: the model-server image (default: tern/serve:<version>-<node arch>)')
    .option('--cpu <cores>', 'cpu request per replica', Number, 0.5)
    .option('--memory <mb>', 'memory request per replica (MB)', parsePositiveInt, 256)
    .option('--selector <k=v...>', 'node labels to match')
    .option('--spread <mode>', 'node | zone | none', 'node')
    .option('--prefer-site <site>', 'prefer nodes of this site')
    .option('--locality <policy>', 'how gateways pick replicas: local-first | fastest | cloud-only', 'local-first')
    .option('--hedge', 'gateways send a second copy to another replica when the first is slower than the recent p95')
    .option('--app-slo <ms>', 'also serve it as a Clipper-style app POST /<name>/predict with this SLO', parsePositiveInt)
    .action(act(async (ref: string, o: any) => {
      const { model, version } = parseModelRef(ref);
      const selector = parseSelector(o.selector);
      const d = await (await client()).post<any>('/deployments', {
        name: o.name ?? model, model, ...(version ? { version } : {}), replicas: o.replicas, runtime: o.runtime, ...(o.image ? { image: o.image } : {}),
        resources: { cpu: o.cpu, memory_mb: o.memory }, selector, spread: o.spread, ...(o.preferSite ? { prefer_site: o.preferSite } : {}),
        routing: { locality: o.locality, hedge: o.hedge === true }, ...(o.appSlo ? { app: { slo_ms: o.appSlo } } : {}),
      });
      process.stdout.write(`deployment ${d.name} created: ${model} v${d.version} x${o.replicas}\n`);
    }));

  const deps = program.command('deployments').description('deployments');
  deps.command('ls', { isDefault: true }).option('--json').action(act(async (o: Out) => {
    const res = await (await client()).get<any>('/deployments');
    const list: any[] = res.deployments ?? res;
    // A container deployment runs an image; its version is its revision (a new one per image rolled out).
    print(list, o, () => formatTable(list.map((d) => ({
      name: d.name, kind: d.kind ?? 'model', runs: d.kind === 'container' ? d.spec.image : d.model, version: d.version, replicas: d.spec?.replicas,
      ready: d.status ? `${d.status.ready}/${d.status.desired}` : undefined, deleting: d.deleting || undefined,
    })), ['name', 'kind', 'runs', 'version', 'replicas', 'ready', 'deleting']));
  }));
  deps.command('show <name>').action(act(async (name: string) => print(await (await client()).get(`/deployments/${name}`), { json: true })));
  deps.command('scale <name> <replicas>').action(act(async (name: string, n: string) => {
    await (await client()).post(`/deployments/${name}/scale`, { replicas: parsePositiveIntOrZero(n) });
    process.stdout.write(`${name} scaled to ${n}\n`);
  }));
  deps.command('rollout <name> <version>').description('a model VERSION, or for a container deployment a new image (--image)')
    .option('--image', 'VERSION is an image reference: roll a container deployment out to it')
    .action(act(async (name: string, to: string, o: { image?: boolean }) => {
      await (await client()).post(`/deployments/${name}/rollout`, o.image ? { image: to } : { version: to });
      process.stdout.write(`${name} rolling out ${o.image ? 'image' : 'version'} ${to}\n`);
    }));
  deps.command('rm <name>').action(act(async (name: string) => {
    await (await client()).request('DELETE', `/deployments/${name}`);
    process.stdout.write(`${name} deleting: replicas stop, then it is removed\n`);
  }));

  program.command('routes').description('the routing table the gateways route by').option('--json')
    .action(act(async (o: Out) => {
      const table = await (await client()).get<any>('/routes');
      print(table, o, () => `version ${table.version}\n${formatTable(table.routes.flatMap((r: any) => (r.replicas.length ? r.replicas : [{}]).map((x: any) => ({
        deployment: r.deployment, locality: r.policy.locality, replica: x.id ?? '(none ready)', node: x.node, address: x.address ? `${x.address}:${x.port}` : undefined, site: x.site,
      }))), ['deployment', 'locality', 'replica', 'node', 'address', 'site'])}`);
    }));

  program.command('events').description('the audit trail').option('--subject <prefix>').option('--kind <kind>').option('--limit <n>', 'how many', parsePositiveInt, 50).option('--json')
    .action(act(async (o: Out & { subject?: string; kind?: string; limit: number }) => {
      const q = new URLSearchParams({ limit: String(o.limit), ...(o.subject ? { subject: o.subject } : {}), ...(o.kind ? { kind: o.kind } : {}) });
      const res = await (await client()).get<any>(`/events?${q}`);
      const list: any[] = res.events ?? res;
      print(list, o, () => formatTable(list.map((e) => ({ time: new Date(e.ts).toISOString().slice(11, 19), kind: e.kind, subject: e.subject, message: e.message })), ['time', 'kind', 'subject', 'message']));
    }));

  program.command('join-token').description('join tokens for agents')
    .command('create').option('--ttl <seconds>', 'lifetime', parsePositiveInt, 86400).option('--description <text>')
    .action(act(async (o: { ttl: number; description?: string }) => {
      const res = await (await client()).post<any>('/join-tokens', { ttl_s: o.ttl, ...(o.description ? { description: o.description } : {}) });
      process.stdout.write(`${res.token}\n`);
    }));
}

function parsePositiveIntOrZero(v: string): number {
  if (!/^[0-9]+$/.test(v)) throw new Error(`replicas must be a whole number, got '${v}'`);
  return Number(v);
}
