/**
 * Path and query parameters of the control API. Request bodies are the wire
 * schemas of protocol/fleet.ts; these only describe URLs.
 */
import { z } from 'zod';
import { NameSchema } from '../../protocol/fleet.js';

/** Query values arrive as strings; `z.coerce` would turn "" into 0, so digits are required. */
export const Digits = z.string().regex(/^[0-9]{1,15}$/, 'expected a non-negative integer').transform(Number);

export const NameParams = z.object({ name: NameSchema });
export const VersionParams = z.object({ name: NameSchema, version: z.string().regex(/^[1-9][0-9]*$/, 'versions are positive integers') });
export const NodeParams = z.object({ id: NameSchema });
export const TokenParams = z.object({ id: z.string().regex(/^[a-f0-9]{12}$/, 'token ids are 12 hex digits') });
export const UploadParams = z.object({ id: z.string().regex(/^[a-f0-9]{32}$/, 'upload ids are 32 hex digits') });
export const BlobParams = z.object({ sha256: z.string().regex(/^[a-f0-9]{64}$/, 'sha256 must be 64 lower-case hex digits') });

export const OffsetQuery = z.object({ offset: Digits });
export const ImageRefQuery = z.object({ ref: z.string().min(1).max(255) }).strict();

export const EventsQuery = z.object({
  since: Digits.optional(),
  subject: z.string().min(1).max(200).optional(),
  kind: z.string().min(1).max(100).optional(),
  limit: Digits.pipe(z.number().int().min(1).max(1000)).optional(),
}).strict();
