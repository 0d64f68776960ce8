/**
 * Calls from the control plane to one node's agent, over the fleet's MQTT
 * broker: the operator's container operations (list, inspect, start/stop,
 * logs, exec, file copy) run on the node that holds the container, while the
 * operator talks only to the control plane.
 *
 * Topics (protocol/fleet.ts): control -> agent on `tern/nodes/<node>/rpc`,
 * agent -> control on `tern/nodes/<node>/rpc-reply`, all QoS 0. QoS 0 is
 * deliberate: a call is only worth making while both ends are connected, so
 * nothing may be queued for an offline agent (a stale `exec` run hours later
 * would be wrong); each side fails its calls when its session drops, and the
 * control plane also when the agent's session restarts (presence "online").
 *
 * One call:
 *   control  req {id, method, params, window}       ->
 *   agent    ack {id}                                <-  (within ACK_TIMEOUT_MS, else the caller gives up)
 *   either   data {id, seq, data, stream?}           <-> with flow control: a sender may have at most
 *   either   credit {id, n}                          <->   `window` data frames unanswered by credit
 *   control  end {id}  (the upload stream is complete)
 *   control  cancel {id} (the caller went away: a log follower hung up)
 *   agent    result {id, value} | error {id, code, message}   (ends the call)
 * Data is base64 in JSON: one encoding for every frame, at a 4/3 size cost
 * that is small next to the engine and the network on these paths.
 */
import { z } from 'zod';
import { ERROR_KINDS, TernError, formatZodError, type ErrorCode } from './errors.js';

/** Bytes of payload in one data frame (before base64). */
export const RPC_CHUNK_BYTES = 48 * 1024;
/** Data frames a sender may have in flight before it waits for credit. */
export const RPC_WINDOW = 16;
/** An agent acknowledges a request within this time, or the caller reports the node as not answering. */
export const RPC_ACK_TIMEOUT_MS = 10_000;

const CallId = z.string().min(1).max(100);
const Stream = z.enum(['stdout', 'stderr']);

export const RpcRequestFrameSchema = z.object({
  t: z.literal('req'), id: CallId, method: z.string().min(1).max(100), params: z.unknown(), window: z.number().int().positive().max(1024),
});
export const RpcDataFrameSchema = z.object({ t: z.literal('data'), id: CallId, seq: z.number().int().nonnegative(), data: z.string(), stream: Stream.optional() });
export const RpcCreditFrameSchema = z.object({ t: z.literal('credit'), id: CallId, n: z.number().int().positive() });
export const RpcEndFrameSchema = z.object({ t: z.literal('end'), id: CallId });
export const RpcCancelFrameSchema = z.object({ t: z.literal('cancel'), id: CallId, reason: z.string().max(500).optional() });
export const RpcAckFrameSchema = z.object({ t: z.literal('ack'), id: CallId });
export const RpcResultFrameSchema = z.object({ t: z.literal('result'), id: CallId, value: z.unknown() });
export const RpcErrorFrameSchema = z.object({
  t: z.literal('error'), id: CallId,
  code: z.string().refine((c): c is ErrorCode => c in ERROR_KINDS, 'unknown error code'),
  message: z.string(),
});

/** What the control plane sends an agent. */
export const RpcToAgentFrameSchema = z.discriminatedUnion('t', [
  RpcRequestFrameSchema, RpcDataFrameSchema, RpcCreditFrameSchema, RpcEndFrameSchema, RpcCancelFrameSchema,
]);
/** What an agent sends the control plane. */
export const RpcFromAgentFrameSchema = z.discriminatedUnion('t', [
  RpcAckFrameSchema, RpcDataFrameSchema, RpcCreditFrameSchema, RpcResultFrameSchema, RpcErrorFrameSchema,
]);
export type RpcToAgentFrame = z.infer<typeof RpcToAgentFrameSchema>;
export type RpcFromAgentFrame = z.infer<typeof RpcFromAgentFrameSchema>;
export type RpcDataFrame = z.infer<typeof RpcDataFrameSchema>;
export type RpcStream = z.infer<typeof Stream>;

// ---------------------------------------------------------------------------
// Methods: container operations on the node's engine

/** Container names as engines accept them (and nothing that could be read as a path or a flag). */
const ContainerName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'container names are letters, digits, _ . - and start with a letter or digit');
/** An absolute path inside the container. */
const ContainerPath = z.string().min(2).max(4096).regex(/^\//, 'paths inside a container are absolute (start with /)')
  .refine((p) => !p.split('/').includes('..'), 'paths inside a container may not contain ..');

export const ContainerMethods = {
  list: { name: 'containers.list', params: z.object({}).strict() },
  inspect: { name: 'containers.inspect', params: z.object({ name: ContainerName }).strict() },
  lifecycle: {
    name: 'containers.lifecycle',
    params: z.object({ name: ContainerName, op: z.enum(['start', 'stop', 'restart', 'rm']), grace_s: z.number().int().min(0).max(600).default(5) }).strict(),
  },
  logs: {
    name: 'containers.logs',
    params: z.object({
      name: ContainerName,
      follow: z.boolean().default(false),
      tail: z.number().int().nonnegative().optional(),
      /** Unix time in seconds. */
      since: z.number().int().nonnegative().optional(),
      timestamps: z.boolean().default(false),
    }).strict(),
  },
  exec: {
    name: 'containers.exec',
    params: z.object({ name: ContainerName, cmd: z.array(z.string().max(8192)).min(1, 'exec needs a command').max(256) }).strict(),
  },
  /** Upload: the file's bytes follow as the call's data frames. */
  copyIn: {
    name: 'containers.copy-in',
    params: z.object({ name: ContainerName, path: ContainerPath, size: z.number().int().nonnegative().max(2 ** 40), mode: z.number().int().min(0).max(0o777).default(0o644) }).strict(),
  },
  /** Download: the file's bytes come back as data frames; the result says its size. */
  copyOut: { name: 'containers.copy-out', params: z.object({ name: ContainerName, path: ContainerPath }).strict() },
} as const;

export type ContainerMethod = keyof typeof ContainerMethods;
export type ContainerParams<M extends ContainerMethod> = z.input<(typeof ContainerMethods)[M]['params']>;

/**
 * One line of the NDJSON the control plane's API streams for container logs
 * and exec: output (`stream`, `text`), a failure after output began
 * (`error`, `code`), or exec's last line (`exit_code`).
 */
export interface ContainerOutputLine { stream?: RpcStream; text?: string; error?: string; code?: string; exit_code?: number }

/** A tern container on a node's engine, as `containers.list` reports it. */
export interface ContainerSummary { name: string; id: string; image: string; state: string; kind: string; labels: Record<string, string> }

/** Checks a method's params (and fills in defaults); BAD_REQUEST naming the method and the problem otherwise. */
export function parseContainerParams<M extends ContainerMethod>(method: M, params: unknown): z.output<(typeof ContainerMethods)[M]['params']> {
  const parsed = ContainerMethods[method].params.safeParse(params ?? {});
  if (!parsed.success) throw new TernError('BAD_REQUEST', `${ContainerMethods[method].name}: ${formatZodError(parsed.error)}`);
  return parsed.data as z.output<(typeof ContainerMethods)[M]['params']>;
}
