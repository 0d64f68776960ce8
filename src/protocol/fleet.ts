/**
 * The fleet's wire formats: what agents and the control plane say to each other
 * over MQTT, and the bodies of the control plane's REST API. One definition,
 * used by both sides and by the simulated agents of the fleet benchmark.
 */
import { z } from 'zod';
import { AppSpecSchema } from './apps.js';
import { RoutingPolicySchema } from './routing.js';

// ---------------------------------------------------------------------------
// MQTT topics. An agent may publish only under its own node prefix and
// subscribe only to its own desired state and commands (enforced by the broker).

export const TOPIC_PREFIX = 'tern/nodes';
export const topics = {
  /** agent -> control, QoS 0, every heartbeat interval */
  heartbeat: (node: string) => `${TOPIC_PREFIX}/${node}/heartbeat`,
  /** agent -> control, QoS 1, on every replica state change */
  status: (node: string) => `${TOPIC_PREFIX}/${node}/status`,
  /** agent -> control, retained, QoS 1: "online", and "offline" as the last will */
  presence: (node: string) => `${TOPIC_PREFIX}/${node}/presence`,
  /** control -> agent, retained, QoS 1: the full set of replicas the node must run */
  desired: (node: string) => `${TOPIC_PREFIX}/${node}/desired`,
  /** control -> agent, QoS 1: one-off commands (idempotent by id) */
  commands: (node: string) => `${TOPIC_PREFIX}/${node}/commands`,
  /** control -> agent, QoS 0: calls to the agent and their upload streams (protocol/rpc.ts) */
  rpc: (node: string) => `${TOPIC_PREFIX}/${node}/rpc`,
  /** agent -> control, QoS 0: answers, download streams and credits of those calls */
  rpcReply: (node: string) => `${TOPIC_PREFIX}/${node}/rpc-reply`,
} as const;

/** Parses `tern/nodes/<node>/<kind>`; undefined for anything else. */
export function parseNodeTopic(topic: string): { node: string; kind: string } | undefined {
  const parts = topic.split('/');
  if (parts.length !== 4 || `${parts[0]}/${parts[1]}` !== TOPIC_PREFIX) return undefined;
  return { node: parts[2], kind: parts[3] };
}

// ---------------------------------------------------------------------------
// Node facts and stats

const LabelKeySchema = z.string().regex(/^[A-Za-z0-9_.\-/]+$/, 'label keys are letters, digits, _ . - /');
export const LabelsSchema = z.record(LabelKeySchema, z.string().max(256));
/** Sets labels on a node; a null value removes the label. */
export const LabelsPatchSchema = z.object({ labels: z.record(LabelKeySchema, z.string().max(256).nullable()) }).strict();

export const NodeFactsSchema = z.object({
  hostname: z.string(),
  arch: z.string(),
  os: z.string(),
  cpus: z.number().int().positive(),
  cpu_model: z.string().default(''),
  memory_bytes: z.number().nonnegative(),
  /** Operations per second of the agent's fixed CPU benchmark (higher is faster). */
  cpu_score: z.number().nonnegative(),
  accelerators: z.array(z.string()).default([]),
  labels: LabelsSchema.default({}),
  site: z.string().optional(),
  zone: z.string().optional(),
  location: z.object({ lat: z.number().min(-90).max(90), lon: z.number().min(-180).max(180) }).optional(),
  /** Address other nodes and gateways use to reach this node's replicas. */
  address: z.string(),
  agent_version: z.string(),
  /** Runtimes this node can run replicas with (absent: an agent from before runtimes were reported; not filtered on). */
  runtimes: z.array(z.enum(['process', 'container', 'microvm'])).optional(),
  /** Kinds of app workload (deployments of `kind` other than model) the agent runs; absent: an agent from before them, given none. */
  workloads: z.array(z.enum(['container'])).optional(),
});
export type NodeFacts = z.infer<typeof NodeFactsSchema>;

export const ReplicaStateSchema = z.enum(['pending', 'starting', 'ready', 'failed', 'stopping', 'stopped']);
export type ReplicaState = z.infer<typeof ReplicaStateSchema>;

export const ReplicaStatsSchema = z.object({
  id: z.string(),
  generation: z.number().int(),
  state: ReplicaStateSchema,
  cpu_percent: z.number().nonnegative().optional(),
  rss_bytes: z.number().nonnegative().optional(),
  net_rx_bytes: z.number().nonnegative().optional(),
  net_tx_bytes: z.number().nonnegative().optional(),
});

/** An app container on the node's engine (tern run, tern compose), measured like cAdvisor does. */
export const ContainerStatsSchema = z.object({
  name: z.string(),
  image: z.string(),
  state: z.string(),
  /** Of one core. */
  cpu_percent: z.number().nonnegative().optional(),
  memory_bytes: z.number().nonnegative().optional(),
  net_rx_bytes: z.number().nonnegative().optional(),
  net_tx_bytes: z.number().nonnegative().optional(),
});
export type ContainerStats = z.infer<typeof ContainerStatsSchema>;

export const HeartbeatSchema = z.object({
  seq: z.number().int().nonnegative(),
  ts: z.number(),
  cpu_percent: z.number().nonnegative(),
  memory_used_bytes: z.number().nonnegative(),
  memory_total_bytes: z.number().nonnegative(),
  load1: z.number().nonnegative(),
  temperature_c: z.number().optional(),
  agent_rss_bytes: z.number().nonnegative(),
  /** The desired-state revision the agent has applied. */
  applied_revision: z.number().int().nonnegative(),
  /** The routing-table version this node's gateway routes by (absent: the node runs no gateway). */
  routes_version: z.number().int().nonnegative().optional(),
  replicas: z.array(ReplicaStatsSchema),
  /** App containers on the node's container engine (absent: the agent runs no container runtime). */
  containers: z.array(ContainerStatsSchema).optional(),
});
export type Heartbeat = z.infer<typeof HeartbeatSchema>;

export const ReplicaStatusSchema = z.object({
  replica_id: z.string(),
  generation: z.number().int(),
  state: ReplicaStateSchema,
  port: z.number().int().optional(),
  /** Usually port + 1, but a replica reports what it really listens on. */
  grpc_port: z.number().int().optional(),
  message: z.string().optional(),
  ts: z.number(),
});
export type ReplicaStatus = z.infer<typeof ReplicaStatusSchema>;

// ---------------------------------------------------------------------------
// Desired state (control -> agent)

export const RuntimeNameSchema = z.enum(['process', 'container', 'microvm']);

/** A Clipper-style app named after the deployment (`POST /<deployment>/predict`), answering `default_output` when the SLO is missed. */
export const DeploymentAppSchema = AppSpecSchema.pick({ slo_ms: true, default_output: true, input_name: true, output_name: true }).strict();
export type DeploymentApp = z.infer<typeof DeploymentAppSchema>;

export const ResourcesSchema = z.object({
  /** Cores (0.5 = half a core). */
  cpu: z.number().positive().max(1024).default(0.5),
  memory_mb: z.number().int().positive().default(256),
});
export type Resources = z.infer<typeof ResourcesSchema>;

export const ReplicaSpecSchema = z.object({
  id: z.string(),
  deployment: z.string(),
  model: z.string(),
  version: z.string(),
  /** sha256 of the model artifact in the registry; the agent verifies its download. */
  sha256: z.string().regex(/^[a-f0-9]{64}$/),
  format: z.enum(['onnx', 'tar']),
  runtime: RuntimeNameSchema,
  /** Container runtime: the model-server image (default: tern/serve:<version>-<node arch>). */
  image: z.string().min(1).optional(),
  resources: ResourcesSchema,
  /** config.json to serve the model with (from the registry); absent: inferred from the model. */
  config: z.record(z.string(), z.unknown()).optional(),
  app: DeploymentAppSchema.optional(),
  /** Fences stale agents: a replica runs only while its generation is current. */
  generation: z.number().int().positive(),
});
export type ReplicaSpec = z.infer<typeof ReplicaSpecSchema>;

const ImageRefSchema = z.string({ error: (i) => (i.input === undefined ? 'an image is required (the container image to run)' : 'an image reference is a string') })
  .regex(/^[A-Za-z0-9][A-Za-z0-9._\-/:@]{0,254}$/, 'image references are letters, digits and . _ - / : @');

const PortNumberSchema = z.number().int().min(1, 'ports are 1-65535').max(65535, 'ports are 1-65535');

/** A container port and the node port it is reached on. */
export const WorkloadPortSchema = z.object({
  container: PortNumberSchema,
  /** The node's port (bridge networking: forwarded to `container`; host networking: must equal it). Absent: not published. */
  published: PortNumberSchema.optional(),
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
}).strict();
export type WorkloadPort = z.infer<typeof WorkloadPortSchema>;

/**
 * What an app container runs, as the agent needs it. Host networking (the default, as for
 * model replicas and `tern compose`): the container listens on the node's ports itself.
 */
export const WorkloadSpecSchema = z.object({
  image: ImageRefSchema,
  /** Replaces the image's CMD. */
  command: z.array(z.string()).optional(),
  /** Replaces the image's ENTRYPOINT. */
  entrypoint: z.array(z.string()).optional(),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'environment variable names are letters, digits and _'), z.string()).default({}),
  ports: z.array(WorkloadPortSchema).max(64).default([]),
  network: z.enum(['host', 'bridge']).default('host'),
  /** Bind mounts of node paths: /node/path:/container/path[:ro]. */
  volumes: z.array(z.string().regex(/^\/[^:]*:\/[^:]*(:(ro|rw))?$/, 'volumes look like /node/path:/container/path[:ro]')).default([]),
  working_dir: z.string().optional(),
}).strict();
export type WorkloadSpec = z.infer<typeof WorkloadSpecSchema>;

/** The node ports a workload takes: published ports, or with host networking every port it listens on. */
export function hostPorts(w: Pick<WorkloadSpec, 'ports' | 'network'>): number[] {
  return w.ports.flatMap((p) => (w.network === 'host' ? [p.published ?? p.container] : p.published !== undefined ? [p.published] : []));
}

/** One replica of a `kind: container` deployment: the same identity and fencing as a model replica, no model. */
export const WorkloadReplicaSpecSchema = z.object({
  id: z.string(),
  deployment: z.string(),
  runtime: z.literal('container'),
  workload: WorkloadSpecSchema,
  resources: ResourcesSchema,
  generation: z.number().int().positive(),
});
export type WorkloadReplicaSpec = z.infer<typeof WorkloadReplicaSpecSchema>;

export const DesiredStateSchema = z.object({
  node: z.string(),
  /** Increases with every change for this node; agents ignore older revisions. */
  revision: z.number().int().nonnegative(),
  replicas: z.array(ReplicaSpecSchema),
  /**
   * App workload replicas, apart from `replicas`: an agent from before them validates with a
   * schema that drops unknown keys, so it ignores this list instead of refusing the whole state
   * (and the scheduler gives it none: its facts list no `workloads`).
   */
  workloads: z.array(WorkloadReplicaSpecSchema).optional(),
});
export type DesiredState = z.infer<typeof DesiredStateSchema>;

// ---------------------------------------------------------------------------
// REST API bodies

export const JoinRequestSchema = z.object({
  /** A join token for a new node, or the node's own node_token when rejoining with node_id. */
  token: z.string().min(1),
  facts: NodeFactsSchema,
  /** A node rejoining after a restart keeps its identity (and authenticates with its node_token). */
  node_id: z.string().optional(),
});

export const JoinResponseSchema = z.object({
  node_id: z.string(),
  node_token: z.string(),
  mqtt_url: z.string(),
  heartbeat_ms: z.number().int().positive(),
});
export type JoinResponse = z.infer<typeof JoinResponseSchema>;

export const NameSchema = z.string().regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'names are 1-63 lower-case letters, digits, _ . - and start with a letter or digit');

const PlacementFields = {
  name: NameSchema,
  replicas: z.number().int().min(0).max(1000),
  resources: ResourcesSchema.default({ cpu: 0.5, memory_mb: 256 }),
  selector: LabelsSchema.default({}),
  /** Spread replicas across nodes (default) or zones. */
  spread: z.enum(['node', 'zone', 'none']).default('node'),
  /** Prefer nodes of this site (locality preference); others are used when it is full. */
  prefer_site: z.string().optional(),
};

export const ModelDeploymentSpecSchema = z.object({
  /** Absent in specs stored before kinds existed. */
  kind: z.literal('model').optional(),
  ...PlacementFields,
  model: z.string().min(1),
  /** Absent: the newest version in the registry at deploy time. */
  version: z.string().optional(),
  runtime: RuntimeNameSchema.default('process'),
  /** Container runtime: the model-server image to run (default: tern/serve:<version>-<node arch>, from `tern image build`). */
  image: ImageRefSchema.optional(),
  /** Also serve the model as a Clipper-style app under the deployment's name. */
  app: DeploymentAppSchema.optional(),
  /** How gateways pick among the replicas. */
  routing: RoutingPolicySchema.default({ locality: 'local-first', hedge: false }),
}).strict();
export type ModelDeploymentSpec = z.infer<typeof ModelDeploymentSpecSchema>;

/** An app workload: any image, run by the agents' container runtime, placed like model replicas, never routed to by gateways. */
export const ContainerDeploymentSpecSchema = WorkloadSpecSchema.extend({
  kind: z.literal('container'),
  ...PlacementFields,
  runtime: z.literal('container', { error: 'a container deployment runs on the container runtime' }).default('container'),
}).strict().superRefine((spec, ctx) => {
  spec.ports.forEach((p, i) => {
    if (spec.network === 'host' && p.published !== undefined && p.published !== p.container) {
      ctx.addIssue({ code: 'custom', path: ['ports', i, 'published'], message: `with host networking the container listens on the node's port itself: published (${p.published}) must equal container (${p.container}) or be left out` });
    }
  });
  const ports = hostPorts(spec);
  const twice = ports.find((p, i) => ports.indexOf(p) !== i);
  if (twice !== undefined) ctx.addIssue({ code: 'custom', path: ['ports'], message: `node port ${twice} is published twice; one replica cannot take a node port two times` });
});
export type ContainerDeploymentSpec = z.infer<typeof ContainerDeploymentSpecSchema>;

/** `kind` picks the shape; absent means model (every body from before kinds existed). */
export const DeploymentSpecSchema = z.discriminatedUnion('kind', [ModelDeploymentSpecSchema, ContainerDeploymentSpecSchema]);
export type DeploymentSpec = z.infer<typeof DeploymentSpecSchema>;

/** The part of a container deployment its replicas run. */
export function workloadOf(spec: ContainerDeploymentSpec): WorkloadSpec {
  const { image, command, entrypoint, env, ports, network, volumes, working_dir: workingDir } = spec;
  return { image, ...(command ? { command } : {}), ...(entrypoint ? { entrypoint } : {}), env, ports, network, volumes, ...(workingDir !== undefined ? { working_dir: workingDir } : {}) };
}

export const ScaleRequestSchema = z.object({ replicas: z.number().int().min(0).max(1000) }).strict();
/** A model deployment rolls out another model version; a container deployment another image. */
export const RolloutRequestSchema = z.object({ version: z.string().min(1).optional(), image: ImageRefSchema.optional() }).strict()
  .refine((r) => (r.version === undefined) !== (r.image === undefined), 'send either version (model deployments) or image (container deployments)');

export const LoginRequestSchema = z.object({ username: z.string().min(1), password: z.string().min(1) }).strict();
export const RoleSchema = z.enum(['admin', 'viewer']);
export type Role = z.infer<typeof RoleSchema>;

export const UsernameSchema = z.string().regex(/^[A-Za-z0-9_.@-]{1,64}$/, 'usernames are 1-64 letters, digits, _ . @ -');
const PasswordSchema = z.string().min(8, 'passwords need at least 8 characters').max(256);

export const UserCreateSchema = z.object({ username: UsernameSchema, password: PasswordSchema, role: RoleSchema.default('viewer') }).strict();
export const PasswordChangeSchema = z.object({ password: PasswordSchema }).strict();

export const ApiTokenRequestSchema = z.object({
  name: z.string().min(1).max(100),
  role: RoleSchema.default('viewer'),
}).strict();

export const JoinTokenRequestSchema = z.object({
  /** Lifetime in seconds (default one day). */
  ttl_s: z.number().int().positive().max(365 * 24 * 3600).default(24 * 3600),
  description: z.string().max(200).optional(),
}).strict();

/** Registers an uploaded container image archive (docker-save format) under its reference, for nodes without a registry. */
export const ImageRegistrationSchema = z.object({
  ref: ImageRefSchema,
  platform: z.enum(['linux/amd64', 'linux/arm64']),
  sha256: z.string().regex(/^[a-f0-9]{64}$/, 'sha256 must be 64 lower-case hex digits'),
  size: z.number().int().positive(),
}).strict();
export type ImageRegistration = z.infer<typeof ImageRegistrationSchema>;

export const UploadRequestSchema = z.object({
  version: z.string().regex(/^[1-9][0-9]*$/, 'versions are positive integers').optional(),
  sha256: z.string().regex(/^[a-f0-9]{64}$/, 'sha256 must be 64 lower-case hex digits'),
  size: z.number().int().positive(),
  format: z.enum(['onnx', 'tar']),
  /** Optional config.json content to serve the model with. */
  config: z.record(z.string(), z.unknown()).optional(),
}).strict();
