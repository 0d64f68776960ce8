/**
 * Container image archives for nodes without a registry: upload in chunks
 * (PUT at ?offset, resumable: GET says where to resume), register under an
 * image reference once verified, list, look up and download (nodes, with
 * their node token; Range supported so a node resumes a broken download).
 */
import { ImageRegistrationSchema } from '../../../protocol/fleet.js';
import { TernError } from '../../../protocol/errors.js';
import type { ImageStore } from '../../registry/image-store.js';
import { audit } from '../audit.js';
import type { ApiApp, ControlApiDeps } from '../deps.js';
import { BlobParams, ImageRefQuery, OffsetQuery } from '../route-schemas.js';
import { sendBlob } from './blob-download.js';
import { DEFAULT_CHUNK_LIMIT } from './upload-routes.js';

export function registerImageRoutes(app: ApiApp, deps: ControlApiDeps): void {
  const chunkLimit = deps.chunkLimit ?? DEFAULT_CHUNK_LIMIT;
  const images = (): ImageStore => {
    if (!deps.images) throw new TernError('NOT_FOUND', 'this control plane holds no container images');
    return deps.images;
  };

  app.get('/images/uploads/:sha256', {
    config: { access: 'admin' },
    schema: { summary: 'Bytes of an image archive received so far (the offset to resume from)', tags: ['images'], params: BlobParams },
  }, async (req) => ({ sha256: req.params.sha256, received: await images().received(req.params.sha256), chunk_limit: chunkLimit }));

  app.put('/images/uploads/:sha256', {
    config: { access: 'admin' },
    bodyLimit: chunkLimit,
    schema: { summary: 'Append a chunk (application/octet-stream) of an image archive at ?offset', tags: ['images'], params: BlobParams, querystring: OffsetQuery },
  }, async (req) => {
    if (!Buffer.isBuffer(req.body)) throw new TernError('UNSUPPORTED_MEDIA_TYPE', 'upload chunks must be sent as application/octet-stream');
    return { sha256: req.params.sha256, received: await images().append(req.params.sha256, req.query.offset, req.body) };
  });

  app.post('/images', {
    config: { access: 'admin' },
    schema: { summary: 'Verify an uploaded image archive and register it under its reference', tags: ['images'], body: ImageRegistrationSchema },
  }, async (req, reply) => {
    const record = await images().register(req.body, req.principal?.name);
    audit(deps, req, 'image.registered', `image/${record.ref}`, `image ${record.ref} (${record.platform}, ${record.size} bytes) registered`, { sha256: record.sha256 });
    return reply.code(201).send(record);
  });

  app.get('/images', {
    config: { access: 'any' },
    schema: { summary: 'Container images the control plane holds', tags: ['images'] },
  }, async () => ({ images: deps.images ? deps.store.images.list() : [] }));

  app.get('/images/lookup', {
    config: { access: 'any' },
    schema: { summary: 'One image by reference (?ref=tern/serve:0.1.0-amd64)', tags: ['images'], querystring: ImageRefQuery },
  }, async (req) => images().get(req.query.ref));

  app.delete('/images', {
    config: { access: 'admin' },
    schema: { summary: 'Forget an image (?ref=...)', tags: ['images'], querystring: ImageRefQuery },
  }, async (req) => {
    const record = images().remove(req.query.ref);
    audit(deps, req, 'image.removed', `image/${record.ref}`, `image ${record.ref} removed`);
    return record;
  });

  app.get('/images/blobs/:sha256', {
    config: { access: 'any' },
    schema: { summary: 'Download an image archive (Range supported); nodes use their node token', tags: ['images'], params: BlobParams },
  }, async (req, reply) => sendBlob(images(), req.params.sha256, req.headers.range, reply));
}
