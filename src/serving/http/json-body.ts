/** Request bodies arrive as Buffers (one content-type parser for all); JSON is parsed here with errors a client can act on. */
import type { z } from 'zod';
import { TernError, formatZodError } from '../../protocol/errors.js';

export function parseJson(body: unknown): unknown {
  if (!Buffer.isBuffer(body) || body.length === 0) throw new TernError('MALFORMED_JSON', 'request body is empty; a JSON object is required');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (e) {
    throw new TernError('MALFORMED_JSON', `request body is not valid JSON: ${(e as Error).message}`);
  }
}

export function parseWith<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new TernError('BAD_REQUEST', `invalid ${what}: ${formatZodError(r.error)}`);
  return r.data;
}
