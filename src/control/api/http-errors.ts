/**
 * Every failure becomes `{"error": "..."}` with the status from the error
 * catalogue (protocol/errors.ts). Schema validation failures name the part of
 * the request and the zod path of each problem.
 */
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { TernError } from '../../protocol/errors.js';

const PART: Record<string, string> = { body: 'request body', querystring: 'query string', params: 'path parameter', headers: 'header' };

interface ValidationIssue { instancePath: string; message?: string }

/** `/resources/cpu` -> `resources.cpu`, as formatZodError writes paths; the body itself (`` or `/`: unknown keys) is `(root)`. */
function issuePath(instancePath: string): string {
  const p = instancePath.replace(/^\//, '');
  return p ? p.split('/').join('.') : '(root)';
}

export function validationMessage(context: string | undefined, issues: ValidationIssue[], req: FastifyRequest): string {
  if (context === 'body' && req.body === undefined) return 'request body is empty; a JSON object is required';
  const details = issues.map((i) => `${issuePath(i.instancePath)}: ${i.message ?? 'invalid'}`).join('; ');
  return `invalid ${PART[context ?? ''] ?? context ?? 'request'}: ${details}`;
}

function fastifyErrorMessage(err: FastifyError, req: FastifyRequest): string {
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return `request body is larger than the limit of ${req.routeOptions.bodyLimit} bytes`;
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return `unsupported content-type ${req.headers['content-type'] ?? '(none)'}: send application/json (application/octet-stream for upload chunks)`;
    default:
      return err.message;
  }
}

export function installErrorHandling(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: FastifyError | TernError, req, reply) => {
    if (err instanceof TernError) return reply.code(err.httpStatus).send({ error: err.message });
    if (hasZodFastifySchemaValidationErrors(err)) {
      return reply.code(400).send({ error: validationMessage(err.validationContext, err.validation, req) });
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) log.error({ err, url: req.url }, 'unhandled error in control API route');
    return reply.code(status).send({ error: status === 500 ? `internal error: ${err.message}` : fastifyErrorMessage(err, req) });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ error: `no route for ${req.method} ${req.url.split('?')[0]}` });
  });
}
