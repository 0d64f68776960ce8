/**
 * The control plane's REST API (fastify): routes under /api/v1 with bearer
 * auth and roles, validated by the zod schemas of protocol/fleet.ts, which
 * also produce the OpenAPI document at /openapi.json.
 *
 * The returned instance is not listening; control-plane.ts may add routes
 * (the dashboard) before calling listen().
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { installAccessControl } from './access.js';
import { installBodyParsers } from './body-parsers.js';
import type { ApiApp, ControlApiDeps } from './deps.js';
import { installErrorHandling } from './http-errors.js';
import { registerAuthRoutes } from './routes/auth-routes.js';
import { registerDeploymentRoutes } from './routes/deployment-routes.js';
import { registerEventRoutes } from './routes/event-routes.js';
import { registerJoinRoutes } from './routes/join-routes.js';
import { registerMetaRoutes } from './routes/meta-routes.js';
import { registerModelRoutes } from './routes/model-routes.js';
import { registerNodeRoutes } from './routes/node-routes.js';
import { registerRoutingRoutes } from './routes/routing-routes.js';
import { registerUserRoutes } from './routes/user-routes.js';
import { registerUploadRoutes } from './routes/upload-routes.js';
import { registerImageRoutes } from './routes/image-routes.js';
import { registerContainerRoutes } from './routes/container-routes.js';

export type { ControlApiDeps, ControlApiHooks } from './deps.js';
export { DEFAULT_CHUNK_LIMIT } from './routes/upload-routes.js';

export const API_PREFIX = '/api/v1';

/** JSON bodies are small; only upload chunks (their own route limit) are big. */
const JSON_BODY_LIMIT = 1024 * 1024;

async function registerOpenApi(app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: { title: 'tern control plane', version: '1', description: 'Fleet, model registry and deployments of tern.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    transform: jsonSchemaTransform,
  });
}

/**
 * close() only drops connections that are idle at that moment; a keep-alive
 * connection whose response finishes a moment later would hold shutdown for the
 * whole keep-alive timeout. Once closing, every finished response ends its connection.
 */
function endConnectionsWhenClosing(app: FastifyInstance): void {
  let closing = false;
  app.addHook('preClose', async () => { closing = true; });
  app.addHook('onResponse', async (req) => { if (closing) req.raw.socket?.end(); });
}

export async function buildControlApi(deps: ControlApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    // pino's Logger is fastify's logger; the cast only bridges the two packages' declarations.
    loggerInstance: deps.log as unknown as FastifyBaseLogger,
    // Agents poll and heartbeat; a log line per request would drown what matters. Errors are still logged.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: JSON_BODY_LIMIT,
    return503OnClosing: true,
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  installBodyParsers(app);
  installErrorHandling(app, deps.log);
  installAccessControl(app, deps.store);
  endConnectionsWhenClosing(app);
  await registerOpenApi(app);

  const typed = app.withTypeProvider<ZodTypeProvider>() as unknown as ApiApp;
  registerMetaRoutes(typed, deps);
  await app.register(async (api) => {
    const v1 = api.withTypeProvider<ZodTypeProvider>() as unknown as ApiApp;
    registerAuthRoutes(v1, deps);
    registerJoinRoutes(v1, deps);
    registerNodeRoutes(v1, deps);
    registerContainerRoutes(v1, deps);
    registerModelRoutes(v1, deps);
    registerUploadRoutes(v1, deps);
    registerImageRoutes(v1, deps);
    registerDeploymentRoutes(v1, deps);
    registerEventRoutes(v1, deps);
    registerRoutingRoutes(v1, deps);
    registerUserRoutes(v1, deps);
  }, { prefix: API_PREFIX });
  return app;
}
