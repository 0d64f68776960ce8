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

export const DesiredStateSchema = z.object({
  node: z.string(),
  /** Increases with every change for this node; agents ignore older revisions. */
  revision: z.number().int().nonnegative(),
  replicas: z.array(ReplicaSpecSchema),
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

export const DeploymentSpecSchema = z.object({
  name: NameSchema,
  model: z.string().min(1),
  /** Absent: the newest version in the registry at deploy time. */
  version: z.string().optional(),
  replicas: z.number().int().min(0).max(1000),
  runtime: RuntimeNameSchema.default('process'),
  /** Container runtime: the model-server image to run (default: tern/serve:<version>-<node arch>, from `tern image build`). */
  image: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._\-/:@]{0,254}$/, 'image references are letters, digits and . _ - / : @').optional(),
  resources: ResourcesSchema.default({ cpu: 0.5, memory_mb: 256 }),
  selector: LabelsSchema.default({}),
  /** Spread replicas across nodes (default) or zones. */
  spread: z.enum(['node', 'zone', 'none']).default('node'),
  /** Prefer nodes of this site (locality preference); others are used when it is full. */
  prefer_site: z.string().optional(),
  /** Also serve the model as a Clipper-style app under the deployment's name. */
  app: DeploymentAppSchema.optional(),
  /** How gateways pick among the replicas. */
  routing: RoutingPolicySchema.default({ locality: 'local-first', hedge: false }),
}).strict();
export type DeploymentSpec = z.infer<typeof DeploymentSpecSchema>;

export const ScaleRequestSchema = z.object({ replicas: z.number().int().min(0).max(1000) }).strict();
export const RolloutRequestSchema = z.object({ version: z.string().min(1) }).strict();

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
  ref: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._\-/:@]{0,254}$/, 'image references are letters, digits and . _ - / : @'),
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
