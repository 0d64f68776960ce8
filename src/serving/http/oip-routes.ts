/** Open Inference Protocol v2 REST routes (health, metadata, readiness, infer). */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { SERVER_EXTENSIONS, SERVER_NAME, SERVER_VERSION } from '../../protocol/oip.js';
import type { InferenceCore } from '../core/inference-core.js';
import { decodeOipRequest, encodeOipResponse } from './oip-rest.js';

interface ModelParams { model: string; version?: string }
type ModelRequest = FastifyRequest<{ Params: ModelParams }>;

export function registerOipRoutes(app: FastifyInstance, core: InferenceCore): void {
  app.get('/v2/health/live', async (_req, reply) => reply.code(core.isLive() ? 200 : 503).send({ live: core.isLive() }));
  app.get('/v2/health/ready', async (_req, reply) => reply.code(core.isReady() ? 200 : 503).send({ ready: core.isReady() }));
  app.get('/v2', async () => ({ name: SERVER_NAME, version: SERVER_VERSION, extensions: SERVER_EXTENSIONS }));

  const metadata = async (req: ModelRequest) => {
    const m = core.modelMetadata(req.params.model, req.params.version);
    return { name: m.name, versions: m.versions, platform: m.platform, inputs: m.inputs, outputs: m.outputs };
  };
  app.get('/v2/models/:model', metadata);
  app.get('/v2/models/:model/versions/:version', metadata);

  const ready = async (req: ModelRequest, reply: FastifyReply) => {
    core.requireModel(req.params.model); // 404 for unknown models, 503 below for not-ready ones
    const ok = core.isModelReady(req.params.model, req.params.version);
    return reply.code(ok ? 200 : 503).send({ name: req.params.model, ready: ok });
  };
  app.get('/v2/models/:model/ready', ready);
  app.get('/v2/models/:model/versions/:version/ready', ready);

  const infer = async (req: ModelRequest, reply: FastifyReply) => {
    const decoded = decodeOipRequest(req.params.model, req.params.version, req.body as Buffer, req.headers);
    const res = await core.infer({ ...decoded.request, protocol: 'rest' });
    const encoded = encodeOipResponse(res, decoded);
    if (encoded.headerLength === undefined) return reply.send(encoded.body);
    return reply
      .header('inference-header-content-length', encoded.headerLength)
      .type('application/octet-stream')
      .send(encoded.body);
  };
  app.post('/v2/models/:model/infer', infer);
  app.post('/v2/models/:model/versions/:version/infer', infer);

  // Triton's model repository extension: what is loaded, in which state and why.
  app.post('/v2/repository/index', async () =>
    core.modelStatus().flatMap((m): Record<string, string>[] =>
      m.versions.length === 0
        ? [{ name: m.name, state: 'UNAVAILABLE', reason: m.error ?? 'no version directory' }]
        : m.versions.map((v) => ({ name: m.name, version: v.version, state: v.state, ...(v.reason ? { reason: v.reason } : {}) })),
    ));
}
