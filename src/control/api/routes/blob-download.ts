/**
 * Streams a blob, with single-range support (`Range: bytes=N-` / `bytes=N-M`)
 * so an agent on a flaky link resumes a large download instead of restarting.
 */
import { createReadStream } from 'node:fs';
import type { FastifyReply } from 'fastify';
import { TernError } from '../../../protocol/errors.js';
import type { BlobStore } from '../../registry/blob-store.js';

interface ByteRange { start: number; end: number }

function parseRange(header: string, size: number): ByteRange | 'unsatisfiable' {
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) throw new TernError('BAD_REQUEST', `unsupported Range "${header}": use bytes=<start>- or bytes=<start>-<end>`);
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/** `registry`: the model registry or the image store (anything holding a BlobStore). */
export function sendBlob(registry: { blobs: BlobStore }, sha256: string, range: string | undefined, reply: FastifyReply): FastifyReply {
  const size = registry.blobs.size(sha256);
  if (size === undefined) throw new TernError('NOT_FOUND', `blob ${sha256} not found in the registry`);
  const file = registry.blobs.path(sha256);
  const r = range ? parseRange(range, size) : undefined;
  if (r === 'unsatisfiable') {
    return reply.code(416).header('content-range', `bytes */${size}`).send({ error: `range ${range} is outside the blob's ${size} bytes` });
  }
  reply.header('content-type', 'application/octet-stream').header('accept-ranges', 'bytes').header('etag', `"${sha256}"`);
  if (r) {
    reply.code(206).header('content-range', `bytes ${r.start}-${r.end}/${size}`).header('content-length', r.end - r.start + 1);
    return reply.send(createReadStream(file, { start: r.start, end: r.end }));
  }
  return reply.header('content-length', size).send(createReadStream(file));
}
