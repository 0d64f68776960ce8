/**
 * The OIP binary tensor data extension: a body is `<JSON header><blob><blob>...`
 * with the JSON length in the `Inference-Header-Content-Length` header, and each
 * binary input carrying `parameters.binary_data_size`. Outputs can be returned
 * the same way.
 */
import { TernError } from '../../protocol/errors.js';

export interface SplitBody {
  json: Buffer;
  /** Bytes after the JSON header, consumed in input order. */
  binary: Buffer;
}

export function splitBinaryBody(body: Buffer, headerValue: string | string[] | undefined): SplitBody {
  if (headerValue === undefined) return { json: body, binary: Buffer.alloc(0) };
  const raw = Array.isArray(headerValue) ? headerValue[0] : headerValue;
  const len = Number(raw);
  if (!/^[0-9]+$/.test(raw.trim()) || !Number.isSafeInteger(len)) {
    throw new TernError('BAD_BINARY_HEADER', `Inference-Header-Content-Length must be a non-negative integer, got '${raw}'`);
  }
  if (len > body.length) {
    throw new TernError('BAD_BINARY_HEADER', `Inference-Header-Content-Length is ${len} but the body has only ${body.length} bytes`);
  }
  return { json: body.subarray(0, len), binary: body.subarray(len) };
}

/** Hands out consecutive slices of the binary section and checks it is used up exactly. */
export class BinaryReader {
  private offset = 0;
  constructor(private readonly data: Buffer) {}

  take(inputName: string, size: unknown): Buffer {
    if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
      throw new TernError('BAD_BINARY_HEADER', `input '${inputName}': binary_data_size must be a non-negative integer`);
    }
    if (this.offset + size > this.data.length) {
      throw new TernError('BAD_BINARY_HEADER', `input '${inputName}': binary_data_size ${size} exceeds the ${this.data.length - this.offset} bytes left in the body`);
    }
    const out = this.data.subarray(this.offset, this.offset + size);
    this.offset += size;
    return out;
  }

  finish(): void {
    const left = this.data.length - this.offset;
    if (left !== 0) throw new TernError('BAD_BINARY_HEADER', `${left} bytes of binary data are not claimed by any input's binary_data_size`);
  }
}

/** Builds a binary response: JSON header, then the blobs; returns body and header length. */
export function joinBinaryBody(header: unknown, blobs: Buffer[]): { body: Buffer; headerLength: number } {
  // One allocation: the JSON is written straight into the body.
  const json = JSON.stringify(header);
  const headerLength = Buffer.byteLength(json);
  let size = headerLength;
  for (const b of blobs) size += b.length;
  const body = Buffer.allocUnsafe(size);
  let offset = body.write(json, 0);
  for (const b of blobs) offset += b.copy(body, offset);
  return { body, headerLength };
}
