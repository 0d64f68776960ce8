/** Clipper-style application routes: `POST /{app}/predict` with `{"input": ...}` or a raw image upload. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AppRegistry } from '../core/apps.js';
import { badRequest } from '../../protocol/errors.js';
import { parseJson } from './json-body.js';

function isUpload(req: FastifyRequest): boolean {
  const type = req.headers['content-type'] ?? '';
  return type.startsWith('image/') || type.startsWith('application/octet-stream');
}

export function registerClipperRoutes(app: FastifyInstance, apps: AppRegistry): void {
  app.get('/apps', async () => ({ apps: apps.list(), ...(apps.error ? { error: apps.error } : {}) }));
  app.post('/:app/predict', async (req: FastifyRequest<{ Params: { app: string } }>) => {
    if (isUpload(req)) {
      if (!Buffer.isBuffer(req.body) || req.body.length === 0) throw badRequest('the upload is empty');
      return apps.predict(req.params.app, req.body);
    }
    const body = parseJson(req.body);
    if (body === null || typeof body !== 'object' || Array.isArray(body) || !('input' in body)) {
      throw badRequest('the request body must be a JSON object with an "input" field');
    }
    return apps.predict(req.params.app, (body as { input: unknown }).input);
  });
}
