/**
 * Docker Compose v3 files as tern reads them: the file is checked against a
 * strict schema (an unknown key is refused, not ignored), `depends_on` is put
 * in start order (a cycle is refused, naming it), and each service becomes a
 * workload: image, command, environment, ports, volumes, replicas and CPU /
 * memory limits. Containers use host networking (the node's network, as
 * tern's replicas do), so a published port must be the same on both sides,
 * and service names resolve to the node itself.
 */
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';

const ServiceName = z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'service names are 1-63 lower-case letters, digits, _ . - and start with a letter or digit');
const StringOrList = z.union([z.string(), z.array(z.string())]);
const Port = z.union([z.number().int().min(1).max(65535), z.string().regex(/^(\d{1,5})(?::(\d{1,5}))?(?:\/tcp)?$/, 'ports look like "8080", "8080:8080" or "8080:8080/tcp"')]);

const ServiceSchema = z.object({
  image: z.string().min(1),
  command: StringOrList.optional(),
  entrypoint: StringOrList.optional(),
  environment: z.union([z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])), z.array(z.string())]).optional(),
  ports: z.array(Port).optional(),
  volumes: z.array(z.string().regex(/^[^:]+:[^:]+(:(ro|rw))?$/, 'volumes look like /host/path:/container/path[:ro]')).optional(),
  depends_on: z.union([z.array(ServiceName), z.record(ServiceName, z.object({ condition: z.enum(['service_started']).optional() }).strict())]).optional(),
  working_dir: z.string().optional(),
  deploy: z.object({
    replicas: z.number().int().min(0).max(100).optional(),
    resources: z.object({
      limits: z.object({ cpus: z.union([z.string(), z.number()]).optional(), memory: z.string().optional() }).strict().optional(),
    }).strict().optional(),
  }).strict().optional(),
}).strict();

export const ComposeFileSchema = z.object({
  version: z.string().optional(),
  name: ServiceName.optional(),
  services: z.record(ServiceName, ServiceSchema),
}).strict();

export type ComposeService = z.infer<typeof ServiceSchema>;

export interface Workload {
  service: string;
  image: string;
  entrypoint?: string[];
  command?: string[];
  env: string[];
  ports: number[];
  binds: string[];
  workingDir?: string;
  replicas: number;
  /** Cores (0 = no limit). */
  cpus: number;
  memoryBytes: number;
  dependsOn: string[];
}

export interface ComposeProject {
  name: string;
  /** In start order: every service after the services it depends on. */
  workloads: Workload[];
}

/** One line for a schema violation: its path in the file and what is wrong. */
function describeIssue(issue: z.core.$ZodIssue): string {
  const where = issue.path.join('.');
  if (issue.code === 'unrecognized_keys') return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `'${k}'`).join(', ')} in ${where || 'the file'}`;
  return `${where || 'the file'}: ${issue.message}`;
}

function list(v: string | string[] | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v : v.split(/\s+/).filter(Boolean);
}

function memoryBytes(text: string | undefined, service: string): number {
  if (!text) return 0;
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)b?$/i.exec(text.trim());
  if (!m) throw new Error(`services.${service}.deploy.resources.limits.memory '${text}' must look like 512M or 1G`);
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Math.round(Number(m[1]) * unit);
}

function ports(service: string, spec: ComposeService): number[] {
  return (spec.ports ?? []).map((p) => {
    const m = /^(\d+)(?::(\d+))?/.exec(String(p))!;
    const host = Number(m[1]);
    const inner = Number(m[2] ?? m[1]);
    if (host !== inner) throw new Error(`services.${service}.ports '${p}': tern runs containers on the node's network, so the host and container ports must be the same`);
    return host;
  });
}

function env(spec: ComposeService): string[] {
  if (!spec.environment) return [];
  if (Array.isArray(spec.environment)) return spec.environment;
  return Object.entries(spec.environment).map(([k, v]) => `${k}=${v ?? ''}`);
}

function dependsOn(spec: ComposeService): string[] {
  if (!spec.depends_on) return [];
  return Array.isArray(spec.depends_on) ? spec.depends_on : Object.keys(spec.depends_on);
}

/** Orders services so that each comes after its dependencies; throws naming a cycle or an unknown dependency. */
export function startOrder(deps: Map<string, string[]>): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, trail: string[]) => {
    if (state.get(name) === 'done') return;
    if (state.get(name) === 'visiting') {
      const cycle = [...trail.slice(trail.indexOf(name)), name];
      throw new Error(`dependency cycle: ${cycle.join(' -> ')}`);
    }
    state.set(name, 'visiting');
    for (const d of deps.get(name) ?? []) {
      if (!deps.has(d)) throw new Error(`service ${name} depends on '${d}', which the file does not define`);
      visit(d, [...trail, name]);
    }
    state.set(name, 'done');
    order.push(name);
  };
  for (const name of [...deps.keys()].sort()) visit(name, []);
  return order;
}

/**
 * Parses and checks a compose file's text; `defaultName` names the project when the file does not.
 * `fleet`: the services become fleet deployments, whose replicas the scheduler spreads over nodes,
 * so replicas or services sharing a published port are its to place or refuse, not an error here.
 */
export function parseCompose(text: string, defaultName: string, options: { fleet?: boolean } = {}): ComposeProject {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new Error(`not valid YAML: ${(err as Error).message.split('\n')[0]}`);
  }
  const parsed = ComposeFileSchema.safeParse(raw);
  if (!parsed.success) throw new Error(parsed.error.issues.map(describeIssue).join('; '));
  const file = parsed.data;
  const names = Object.keys(file.services);
  if (names.length === 0) throw new Error('the file defines no services');
  const order = startOrder(new Map(names.map((n) => [n, dependsOn(file.services[n])])));
  const workloads = order.map((service): Workload => {
    const s = file.services[service];
    const replicas = s.deploy?.replicas ?? 1;
    const p = ports(service, s);
    if (replicas > 1 && p.length && !options.fleet) throw new Error(`services.${service}: ${replicas} replicas cannot share published ports ${p.join(', ')} on one node`);
    const cpus = Number(s.deploy?.resources?.limits?.cpus ?? 0);
    if (!Number.isFinite(cpus) || cpus < 0) throw new Error(`services.${service}.deploy.resources.limits.cpus '${s.deploy?.resources?.limits?.cpus}' must be a number of cores`);
    return {
      service, image: s.image, entrypoint: list(s.entrypoint), command: list(s.command), env: env(s), ports: p,
      binds: s.volumes ?? [], workingDir: s.working_dir, replicas, cpus,
      memoryBytes: memoryBytes(s.deploy?.resources?.limits?.memory, service), dependsOn: dependsOn(s),
    };
  });
  const all = workloads.flatMap((w) => w.ports.map((port) => ({ port, service: w.service })));
  const clash = all.find((a, i) => all.findIndex((b) => b.port === a.port) !== i);
  if (clash && !options.fleet) throw new Error(`port ${clash.port} is published by more than one service`);
  return { name: file.name ?? defaultName, workloads };
}
