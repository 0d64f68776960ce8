/**
 * Container output as the Engine API sends it: for a container without a TTY
 * stdout and stderr are multiplexed in frames of [stream, 0, 0, 0, size (u32
 * BE)] + payload.
 */
import { Transform, type TransformCallback } from 'node:stream';

export interface LogChunk {
  stream: 'stdout' | 'stderr';
  data: Buffer;
}

/** Splits a complete multiplexed buffer into its chunks (a raw TTY buffer is one stdout chunk). */
export function demuxBuffer(buf: Buffer): LogChunk[] {
  const out: LogChunk[] = [];
  let p = 0;
  while (p + 8 <= buf.length && (buf[p] === 1 || buf[p] === 2) && buf[p + 1] === 0 && buf[p + 2] === 0 && buf[p + 3] === 0) {
    const size = buf.readUInt32BE(p + 4);
    out.push({ stream: buf[p] === 2 ? 'stderr' : 'stdout', data: buf.subarray(p + 8, p + 8 + size) });
    p += 8 + size;
  }
  if (p === 0 && buf.length > 0) return [{ stream: 'stdout', data: buf }];
  return out;
}

/** The last `n` non-empty lines of a multiplexed log buffer, stderr's first when it has any. */
export function lastLines(buf: Buffer, n: number): string[] {
  const chunks = demuxBuffer(buf);
  const lines = (stream: 'stdout' | 'stderr') => Buffer.concat(chunks.filter((c) => c.stream === stream).map((c) => c.data))
    .toString('utf8').split('\n').map((l) => l.trimEnd()).filter(Boolean);
  const err = lines('stderr');
  return (err.length ? err : lines('stdout')).slice(-n);
}

/** A stream transform from multiplexed frames to LogChunk objects (frames may be split across reads). */
export class Demuxer extends Transform {
  private pending: Buffer = Buffer.alloc(0);

  constructor() {
    super({ readableObjectMode: true });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (this.pending.length >= 8) {
      const size = this.pending.readUInt32BE(4);
      if (this.pending.length < 8 + size) break;
      this.push({ stream: this.pending[0] === 2 ? 'stderr' : 'stdout', data: this.pending.subarray(8, 8 + size) } satisfies LogChunk);
      this.pending = this.pending.subarray(8 + size);
    }
    cb();
  }
}
