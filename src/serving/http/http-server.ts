/**
 * The HTTP transport: one fastify instance carrying the OIP v2 REST, TF Serving
 * REST and Clipper-style routes plus /metrics. Bodies are read as raw Buffers
 * (one content-type parser for everything) because the binary tensor extension
 * needs the bytes, and each route decodes what it expects with clear errors.
 */
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { TernError } from '../../protocol/errors.js';
import type { InferenceCore } from '../core/inference-core.js';
import type { AppRegistry } from '../core/apps.js';
import { registerOipRoutes } from './oip-routes.js';
import { registerTfServingRoutes } from './tfserving-routes.js';
import { registerClipperRoutes } from './clipper-routes.js';

export interface HttpOptions {
  /** Largest accepted request body in bytes (413 beyond). */
  bodyLimit: number;
}

export { DEFAULT_BODY_LIMIT } from '../limits.js';

export function buildHttpServer(core: InferenceCore, apps: AppRegistry, options: HttpOptions): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: options.bodyLimit, keepAliveTimeout: 65_000, return503OnClosing: true });
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err: FastifyError | TernError, _req, reply) => {
    if (err instanceof TernError) return reply.code(err.httpStatus).send({ error: err.message });
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return reply.code(413).send({ error: `request body is larger than the limit of ${options.bodyLimit} bytes` });
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) core.log.error({ err }, 'unhandled error in HTTP route');
    return reply.code(status).send({ error: err.message });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ error: `no route for ${req.method} ${req.url.split('?')[0]}` });
  });

  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', core.metrics.contentType);
    return core.metrics.text();
  });
  registerOipRoutes(app, core);
  registerTfServingRoutes(app, core);
  registerClipperRoutes(app, apps);
  return app;
}
