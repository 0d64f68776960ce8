/**
 * The containers on a node, operated through the control plane: each route
 * is one call to the node's agent (protocol/rpc.ts, mqtt/node-rpc.ts), which
 * runs it on its engine. Output streams (logs, exec, file downloads) are
 * passed through as they come, with the agent held back when the client reads
 * slowly; uploads stream to the agent the same way. Reading is for viewers;
 * changing a container, exec and file transfers are for admins (a file can
 * hold secrets, and exec is a shell on the node).
 */
import { PassThrough } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { TernError } from '../../../protocol/errors.js';
import { ContainerMethods, parseContainerParams, type ContainerMethod, type ContainerOutputLine, type ContainerParams, type RpcStream } from '../../../protocol/rpc.js';
import type { NodeRpc, CallOptions } from '../../mqtt/node-rpc.js';
import { writeThenCredit } from '../../mqtt/rpc-stream.js';
import { audit } from '../audit.js';
import type { ApiApp, ControlApiDeps } from '../deps.js';
import { Digits, NodeParams } from '../route-schemas.js';

const ContainerParamsSchema = NodeParams.extend({ name: z.string().min(1).max(128) });
const Bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const LogsQuery = z.object({
  follow: Bool.optional(), tail: Digits.optional(), since: Digits.optional(), timestamps: Bool.optional(),
  /** ndjson: one {"stream","text"} object a chunk; text: the output as it was (stdout and stderr interleaved). */
  format: z.enum(['ndjson', 'text']).default('ndjson'),
}).strict();
const LifecycleQuery = z.object({ time: Digits.optional() }).strict();
const FileQuery = z.object({ path: z.string().min(1).max(4096) }).strict();
const UploadQuery = FileQuery.extend({ mode: z.string().regex(/^[0-7]{3,4}$/, 'mode is octal, like 644').optional() }).strict();
const ExecBody = ContainerMethods.exec.params.pick({ cmd: true }).strict();

type Params = z.infer<typeof ContainerParamsSchema>;

const ndjson = (line: ContainerOutputLine) => `${JSON.stringify(line)}\n`;
const outputLine = (data: Buffer, stream: RpcStream | undefined) => ndjson({ stream, text: data.toString('utf8') });
const errorLine = (err: TernError) => ndjson({ error: err.message, code: err.code });

/** A call's output as an HTTP body: the status is decided by what comes first (data: 200; an error: its own status). */
async function streamCall(reply: FastifyReply, contentType: string, run: (o: CallOptions) => Promise<unknown>,
  frame: (data: Buffer, stream: RpcStream | undefined) => Buffer | string, end: (result: unknown, err?: TernError) => string | undefined): Promise<FastifyReply> {
  const body = new PassThrough({ highWaterMark: 256 * 1024 });
  // Once sent, fastify listens for errors (and cuts the response); before that, a failed call is the reply's status instead.
  body.on('error', () => undefined);
  const abort = new AbortController();
  // The client went away (a log follower hung up): cancel the call on the agent. (The request's own 'close' only means its body was read.)
  reply.raw.on('close', () => { if (!reply.raw.writableFinished) abort.abort(); });
  let started!: () => void;
  const firstData = new Promise<void>((resolve) => { started = resolve; });
  const call = run({
    signal: abort.signal,
    onData: (data, stream) => {
      started();
      return new Promise<void>((resolve) => writeThenCredit(body, frame(data, stream), resolve));
    },
  });
  // Before any output, a failure is the reply's status; after, it can only be reported inside the stream.
  const first = await Promise.race([firstData.then(() => 'data' as const), call.then(() => 'done' as const)]);
  void call.then((result) => body.end(end(result)), (err: unknown) => {
    const tail = end(undefined, err instanceof TernError ? err : new TernError('INTERNAL', (err as Error).message));
    if (tail === undefined) body.destroy(err as Error); // a cut transfer must not look complete
    else body.end(tail);
  });
  if (first === 'done') await call;
  return reply.type(contentType).send(body);
}

export function registerContainerRoutes(app: ApiApp, deps: ControlApiDeps): void {
  const rpc = (): NodeRpc => {
    if (!deps.rpc) throw new TernError('NOT_FOUND', 'this control plane makes no calls to agents');
    return deps.rpc;
  };
  /** The node, checked to exist and to be reachable. */
  const reachable = (id: string): string => {
    const node = deps.store.nodes.get(id);
    if (!node) throw new TernError('NOT_FOUND', `node ${id} not found`);
    if (node.state === 'down') throw new TernError('NODE_UNAVAILABLE', `node ${id} is down; its containers can be reached when its agent is back`);
    return node.id;
  };
  // Params are checked here too, so a bad request is refused before the node is bothered (or an upload body read).
  const call = <M extends ContainerMethod>(p: { id: string }, method: M, params: ContainerParams<M>, o?: CallOptions) =>
    rpc().call(reachable(p.id), ContainerMethods[method].name, parseContainerParams(method, params), o);
  const tags = ['containers'];

  app.get('/nodes/:id/containers', {
    config: { access: 'read' },
    schema: { summary: 'Containers tern runs on a node (model replicas and app workloads)', tags, params: NodeParams },
  }, async (req) => ({ node: req.params.id, ...(await call(req.params, 'list', {}) as object) }));

  app.get('/nodes/:id/containers/:name', {
    config: { access: 'read' },
    schema: { summary: 'A container as its engine describes it', tags, params: ContainerParamsSchema },
  }, async (req) => call(req.params, 'inspect', { name: req.params.name }));

  for (const op of ['start', 'stop', 'restart'] as const) {
    app.post(`/nodes/:id/containers/:name/${op}`, {
      config: { access: 'admin' },
      schema: { summary: `${op[0].toUpperCase()}${op.slice(1)} a container (?time: seconds before it is killed)`, tags, params: ContainerParamsSchema, querystring: LifecycleQuery },
    }, async (req) => lifecycle(req, req.params, op, req.query.time));
  }
  app.delete('/nodes/:id/containers/:name', {
    config: { access: 'admin' },
    schema: { summary: 'Remove a container (the supervisor recreates a replica\'s if its deployment still wants it)', tags, params: ContainerParamsSchema },
  }, async (req) => lifecycle(req, req.params, 'rm'));

  const lifecycle = async (req: FastifyRequest, p: Params, op: 'start' | 'stop' | 'restart' | 'rm', time?: number) => {
    const result = await call(p, 'lifecycle', { name: p.name, op, ...(time !== undefined ? { grace_s: time } : {}) });
    audit(deps, req, `container.${op === 'rm' ? 'removed' : op}`, `node/${p.id}`, `container ${p.name} on node ${p.id}: ${op}`, { container: p.name });
    return result;
  };

  app.get('/nodes/:id/containers/:name/logs', {
    config: { access: 'read' },
    schema: { summary: 'A container\'s output (?follow, ?tail, ?since unix seconds, ?timestamps, ?format=ndjson|text), streamed', tags, params: ContainerParamsSchema, querystring: LogsQuery },
  }, async (req, reply) => {
    const { format, ...q } = req.query;
    const lines = format === 'ndjson';
    return streamCall(reply, lines ? 'application/x-ndjson' : 'text/plain; charset=utf-8',
      (o) => call(req.params, 'logs', { name: req.params.name, ...q }, { ...o, timeoutMs: q.follow ? 0 : undefined }),
      (data, stream) => (lines ? outputLine(data, stream) : data),
      (_r, err) => (err ? (lines ? errorLine(err) : undefined) : ''));
  });

  app.post('/nodes/:id/containers/:name/exec', {
    config: { access: 'admin' },
    schema: { summary: 'Run a one-off command in a running container: NDJSON output lines, then {"exit_code"}', tags, params: ContainerParamsSchema, body: ExecBody },
  }, async (req, reply) => {
    audit(deps, req, 'container.exec', `node/${req.params.id}`, `exec in ${req.params.name} on node ${req.params.id}: ${req.body.cmd.join(' ').slice(0, 200)}`, { container: req.params.name });
    return streamCall(reply, 'application/x-ndjson',
      (o) => call(req.params, 'exec', { name: req.params.name, cmd: req.body.cmd }, { ...o, timeoutMs: 0 }),
      outputLine,
      (result, err) => (err ? errorLine(err) : ndjson(result as ContainerOutputLine)));
  });

  app.get('/nodes/:id/containers/:name/files', {
    config: { access: 'admin' },
    schema: { summary: 'Download a file out of a container (?path=/abs/path), streamed', tags, params: ContainerParamsSchema, querystring: FileQuery },
  }, async (req, reply) => streamCall(reply, 'application/octet-stream',
    (o) => call(req.params, 'copyOut', { name: req.params.name, path: req.query.path }, { ...o, timeoutMs: 0 }),
    (data) => data,
    (_r, err) => (err ? undefined : '')));

  // Uploads stream to the agent as they arrive: the body is not parsed (nor buffered) here.
  void app.register(async (plain) => {
    plain.removeContentTypeParser('application/octet-stream');
    plain.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));
    const scope = plain.withTypeProvider<ZodTypeProvider>() as unknown as ApiApp;
    scope.put('/nodes/:id/containers/:name/files', {
      config: { access: 'admin' },
      bodyLimit: Number.MAX_SAFE_INTEGER,
      schema: { summary: 'Upload a file into a container (?path=/abs/path, ?mode=644; body: the bytes, with Content-Length)', tags, params: ContainerParamsSchema, querystring: UploadQuery },
    }, async (req) => {
      const size = Number(req.headers['content-length']);
      if (!req.headers['content-length'] || !Number.isSafeInteger(size)) throw new TernError('BAD_REQUEST', 'uploads need a Content-Length (the file\'s size goes into the container\'s tar header first)');
      if (typeof (req.body as NodeJS.ReadableStream | undefined)?.pipe !== 'function') {
        throw new TernError('UNSUPPORTED_MEDIA_TYPE', 'upload the file as application/octet-stream');
      }
      const mode = req.query.mode ? parseInt(req.query.mode, 8) : undefined;
      const result = await call(req.params, 'copyIn', { name: req.params.name, path: req.query.path, size, ...(mode !== undefined ? { mode } : {}) },
        { input: req.body as AsyncIterable<Buffer>, timeoutMs: 0 });
      audit(deps, req, 'container.file-uploaded', `node/${req.params.id}`, `${size} bytes uploaded to ${req.params.name}:${req.query.path} on node ${req.params.id}`, { container: req.params.name });
      return result;
    });
  });
}
