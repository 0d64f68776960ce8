/** Health and the OpenAPI document, both public. */
import type { ApiApp, ControlApiDeps } from '../deps.js';

/** Upload chunks are raw bytes, which a zod body schema cannot describe; the document says so here. */
function describeChunkBody(doc: Record<string, any>): Record<string, any> { // eslint-disable-line @typescript-eslint/no-explicit-any
  const put = doc.paths?.['/api/v1/uploads/{id}']?.put;
  if (put) put.requestBody = { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } };
  return doc;
}

export function registerMetaRoutes(app: ApiApp, deps: ControlApiDeps): void {
  app.get('/healthz', {
    config: { access: 'public' },
    schema: { summary: 'Liveness and database check', tags: ['meta'], security: [] },
  }, async () => ({ status: 'ok', schema_version: deps.store.schemaVersion() }));

  app.get('/openapi.json', {
    config: { access: 'public' },
    schema: { hide: true },
  }, async () => describeChunkBody(structuredClone(app.swagger()) as Record<string, unknown>));
}
