/**
 * The lab spec (`tern lab up SPEC`, YAML): an emulated edge/cloud testbed on
 * one Linux machine. Hosts are network namespaces on one bridge with CPU and
 * memory limits; links between host pairs have a one-way delay, jitter,
 * bandwidth and loss. The checks that span fields (unknown hosts, address
 * clashes) live in src/lab/spec.ts, which also names the offending entry.
 */
import { z } from 'zod';
import { LabelsSchema } from './fleet.js';

const HostNameSchema = z.string().regex(/^[a-z][a-z0-9]{0,11}$/, 'host names are 1-12 lower-case letters and digits, starting with a letter');
const Ipv4Schema = z.string().regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/, 'must be an IPv4 address like 10.79.0.11');
const PortSchema = z.number().int().min(1).max(65535);

export const LabHostSchema = z.object({
  name: HostNameSchema,
  address: Ipv4Schema,
  /** CPU quota in cores (cgroup cpu.max / cfs_quota): 0.5 = half of one core. Absent: no limit. */
  cpu: z.number().positive().max(1024).optional(),
  /** Memory limit in MiB (cgroup memory.max). Absent: no limit. */
  memory_mb: z.number().int().min(64).optional(),
  /** The agent's --site (placement by site, locality in the gateway). */
  site: z.string().min(1).max(63).optional(),
  labels: LabelsSchema.default({}),
  /** Run a tern agent on this host (default true). */
  agent: z.boolean().default(true),
}).strict();
export type LabHost = z.infer<typeof LabHostSchema>;

export const LabLinkSchema = z.object({
  /** The two hosts this link joins; the link is symmetric. */
  between: z.tuple([HostNameSchema, HostNameSchema]),
  /** One-way delay in milliseconds (RTT = 2 x delay). */
  delay_ms: z.number().min(0, 'delay_ms must be >= 0').max(10_000).default(0),
  /** Each chunk's delay varies uniformly by up to +- jitter_ms (order is kept). */
  jitter_ms: z.number().min(0, 'jitter_ms must be >= 0').max(10_000).default(0),
  /** Bandwidth each way in Mbit/s. Absent: not limited. */
  bandwidth_mbit: z.number().positive('bandwidth_mbit must be > 0').max(100_000).optional(),
  /** Probability (0-100 %) that a chunk is lost; a loss resets the connection (see src/lab/link-proxy.ts). */
  loss_percent: z.number().min(0, 'loss_percent must be >= 0').max(100, 'loss_percent must be <= 100').default(0),
}).strict();
export type LabLink = z.infer<typeof LabLinkSchema>;

export const LabSpecSchema = z.object({
  /** Names every kernel object of the lab: bridge `<prefix>-br`, namespaces `<prefix>-<host>`. */
  prefix: z.string().regex(/^[a-z][a-z0-9]{0,7}$/, 'prefix is 1-8 lower-case letters and digits, starting with a letter').default('ternl'),
  /** The lab's /24: .1 is the bridge (control plane), .2 the links namespace, .200-.254 link proxies. */
  subnet: z.string().regex(/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.0\/24$/, 'subnet must be a /24 like 10.79.0.0/24').default('10.79.0.0/24'),
  control: z.object({
    port: PortSchema.default(7000),
    mqtt_port: PortSchema.default(7883),
  }).strict().default({ port: 7000, mqtt_port: 7883 }),
  /** Ports agents use on every host: their gateway and the replica range the link proxies carry. */
  ports: z.object({
    gateway: PortSchema.default(8000),
    gateway_grpc: PortSchema.default(8001),
    replicas: z.tuple([PortSchema, PortSchema]).default([20000, 20039]),
  }).strict().default({ gateway: 8000, gateway_grpc: 8001, replicas: [20000, 20039] }),
  /** `auto`: tc for bandwidth (and netem for delay) where the kernel has them, the proxy otherwise. */
  shaping: z.enum(['auto', 'proxy']).default('auto'),
  hosts: z.array(LabHostSchema).min(1, 'a lab needs at least one host').max(40),
  links: z.array(LabLinkSchema).default([]),
}).strict();
export type LabSpec = z.infer<typeof LabSpecSchema>;

/**
 * How `tern lab up` calibrated one link's delay (src/lab/link-calibration.ts): the
 * path between two hosts takes time of its own, which the lab subtracts from the
 * delay it adds, and the RTTs it measured doing so.
 */
export const LinkCalibrationSchema = z.object({
  between: z.tuple([z.string(), z.string()]),
  spec_delay_ms: z.number(),
  /** What the lab adds each way after calibration (by the proxy or netem, see `shaping`). */
  applied_delay_ms: z.number(),
  /** Median RTT with the spec's delay added as is. */
  uncalibrated_rtt_ms: z.number(),
  /** Median RTT with `applied_delay_ms`, the last measurement at `lab up`. */
  rtt_ms: z.number(),
  pings: z.number().int(),
  /** Set when the spec cannot be met on this machine. */
  note: z.string().optional(),
});
export type LinkCalibration = z.infer<typeof LinkCalibrationSchema>;

/**
 * What `tern lab up` made, written to `<state dir>/<prefix>/state.json` as it
 * goes, so `tern lab down` removes exactly that (also after a crash) and
 * `tern bench` finds the control plane, the client host and the host groups.
 */
export const LabStateSchema = z.object({
  prefix: z.string(),
  spec_file: z.string().optional(),
  created_at: z.string(),
  bridge: z.string().optional(),
  bridge_address: z.string(),
  namespaces: z.array(z.object({ name: z.string(), veth: z.string().optional() })).default([]),
  cgroups: z.array(z.object({ host: z.string(), kind: z.enum(['v1', 'v2']), dirs: z.array(z.string()) })).default([]),
  /** Extra cgroup parents made for the lab (removed after the host groups). */
  cgroup_parents: z.array(z.string()).default([]),
  /** Detached processes (their own process groups): control plane, link proxies, agents. */
  processes: z.array(z.object({ role: z.string(), pid: z.number().int(), host: z.string().optional() })).default([]),
  hosts: z.array(z.object({
    name: z.string(), address: z.string(), netns: z.string(), site: z.string().optional(), agent: z.boolean(),
    cpu: z.number().optional(), memory_mb: z.number().optional(),
  })).default([]),
  control: z.object({ url: z.string(), token: z.string(), admin_password: z.string() }).optional(),
  shaping: z.object({ delay: z.string(), bandwidth: z.string(), notes: z.array(z.string()) }).optional(),
  links: z.array(LabLinkSchema).default([]),
  link_calibration: z.array(LinkCalibrationSchema).default([]),
  gateway_port: z.number().int().default(8000),
  gateway_grpc_port: z.number().int().default(8001),
  /** Replica ports of every host; the link proxies carry them. */
  replica_ports: z.tuple([z.number().int(), z.number().int()]).default([20000, 20039]),
});
export type LabState = z.infer<typeof LabStateSchema>;
