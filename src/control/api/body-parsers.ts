/**
 * Request bodies: JSON for everything except upload chunks, which are raw
 * bytes. JSON errors are reported in tern's words instead of fastify's.
 */
import type { FastifyInstance } from 'fastify';
import { TernError } from '../../protocol/errors.js';

export function installBodyParsers(app: FastifyInstance): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = body as string;
    // Empty bodies are fine for action routes (cordon, complete); routes that need a body say so.
    if (text.trim() === '') return done(null, undefined);
    try {
      done(null, JSON.parse(text));
    } catch (e) {
      done(new TernError('MALFORMED_JSON', `request body is not valid JSON: ${(e as Error).message}`), undefined);
    }
  });
  app.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
}
