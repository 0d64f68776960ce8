/**
 * Chunked resumable uploads and blob downloads:
 * create (declares sha256, size, format) -> PUT chunks at ?offset -> complete.
 * GET tells the offset to resume from after a lost connection.
 */
import { UploadRequestSchema } from '../../../protocol/fleet.js';
import { TernError } from '../../../protocol/errors.js';
import { audit } from '../audit.js';
import type { ApiApp, ControlApiDeps } from '../deps.js';
import { BlobParams, NameParams, OffsetQuery, UploadParams } from '../route-schemas.js';
import { sendBlob } from './blob-download.js';

export const DEFAULT_CHUNK_LIMIT = 16 * 1024 * 1024;

export function registerUploadRoutes(app: ApiApp, deps: ControlApiDeps): void {
  const { registry } = deps;
  const chunkLimit = deps.chunkLimit ?? DEFAULT_CHUNK_LIMIT;

  app.post('/models/:name/uploads', {
    config: { access: 'admin' },
    schema: { summary: 'Start uploading a model version', tags: ['uploads'], params: NameParams, body: UploadRequestSchema },
  }, async (req, reply) => {
    const status = registry.createUpload(req.params.name, req.body, req.principal?.name);
    return reply.code(201).send({ ...status, chunk_limit: chunkLimit });
  });

  app.put('/uploads/:id', {
    config: { access: 'admin' },
    bodyLimit: chunkLimit,
    schema: { summary: 'Append a chunk (application/octet-stream) at ?offset=<bytes received>', tags: ['uploads'], params: UploadParams, querystring: OffsetQuery },
  }, async (req) => {
    if (!Buffer.isBuffer(req.body)) {
      throw new TernError('UNSUPPORTED_MEDIA_TYPE', 'upload chunks must be sent as application/octet-stream');
    }
    return registry.appendChunk(req.params.id, req.query.offset, req.body);
  });

  app.get('/uploads/:id', {
    config: { access: 'admin' },
    schema: { summary: 'Upload status: bytes received (the offset to resume from)', tags: ['uploads'], params: UploadParams },
  }, async (req) => registry.uploadStatus(req.params.id));

  app.delete('/uploads/:id', {
    config: { access: 'admin' },
    schema: { summary: 'Cancel an upload', tags: ['uploads'], params: UploadParams },
  }, async (req) => {
    await registry.cancelUpload(req.params.id);
    return { cancelled: req.params.id };
  });

  app.post('/uploads/:id/complete', {
    config: { access: 'admin' },
    schema: { summary: 'Verify size, sha256 and layout, then register the model version', tags: ['uploads'], params: UploadParams },
  }, async (req, reply) => {
    const upload = registry.uploads.get(req.params.id);
    try {
      const v = await registry.completeUpload(req.params.id);
      audit(deps, req, 'model.version_created', `model/${v.model}`, `model ${v.model} version ${v.version} registered (${v.format}, ${v.size} bytes)`, { sha256: v.sha256 });
      return reply.code(201).send(v);
    } catch (e) {
      if (e instanceof TernError && e.httpStatus === 400) {
        audit(deps, req, 'model.upload_failed', `model/${upload.model}`, `upload ${upload.id} of model ${upload.model} refused: ${e.message}`);
      }
      throw e;
    }
  });

  app.get('/blobs/:sha256', {
    config: { access: 'any' },
    schema: { summary: 'Download a model blob (Range supported); nodes use their node token', tags: ['uploads'], params: BlobParams },
  }, async (req, reply) => sendBlob(registry, req.params.sha256, req.headers.range, reply));
}
