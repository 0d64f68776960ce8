import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectGrpc, unaryCall } from './grpc-unary-client.js';

/** A gRPC-shaped server whose answer depends on the path, to drive each branch of the client. */
let server: http2.Http2Server;
let target: string;

function frame(message: Buffer): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

beforeAll(async () => {
  server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const request = Buffer.concat(chunks).subarray(5);
      switch (headers[':path']) {
        case '/t.S/Echo':
          stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
          stream.end(frame(Buffer.concat([Buffer.from(`${headers['grpc-timeout'] ?? 'none'}|`), request])));
          return;
        case '/t.S/NotFound': // trailers-only answer, percent-encoded message
          stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5', 'grpc-message': 'no%20such%20model' }, { endStream: true });
          return;
        case '/t.S/Http503':
          stream.respond({ ':status': 503 }, { endStream: true });
          return;
        case '/t.S/Truncated':
          stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
          stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
          stream.end(frame(Buffer.from('whole message')).subarray(0, 9));
          return;
        default: // Slow: never answers
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  target = `127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

describe('unaryCall over node:http2', () => {
  it('returns the answer message and sends the deadline as grpc-timeout', async () => {
    const session = connectGrpc(target);
    try {
      const r = await unaryCall(session, '/t.S/Echo', Buffer.from('hi'), { deadline: Date.now() + 5_000 });
      expect(r).toMatchObject({ kind: 'answer', code: 0 });
      expect(r.kind === 'answer' && r.message?.toString()).toMatch(/^(4\d{3}|5000)m\|hi$/);
    } finally {
      session.close();
    }
  });

  it('reads a trailers-only status, an HTTP error and a truncated message as statuses with details', async () => {
    const session = connectGrpc(target);
    try {
      expect(await unaryCall(session, '/t.S/NotFound', Buffer.alloc(0))).toEqual({ kind: 'answer', code: 5, details: 'no such model' });
      expect(await unaryCall(session, '/t.S/Http503', Buffer.alloc(0))).toEqual({ kind: 'answer', code: 14, details: 'server answered HTTP 503' });
      expect(await unaryCall(session, '/t.S/Truncated', Buffer.alloc(0))).toMatchObject({ kind: 'answer', code: 13, details: expect.stringMatching(/no complete/) });
    } finally {
      session.close();
    }
  });

  it('reports a refused connection as connect and a cancelled call as cancelled', async () => {
    const closed = http2.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const refused = connectGrpc(`127.0.0.1:${port}`);
    refused.on('error', () => undefined);
    expect(await unaryCall(refused, '/t.S/Echo', Buffer.alloc(0))).toMatchObject({ kind: 'connect' });
    refused.destroy();

    const session = connectGrpc(target);
    try {
      const abort = new AbortController();
      const pending = unaryCall(session, '/t.S/Slow', Buffer.alloc(0), { signal: abort.signal });
      setTimeout(() => abort.abort(), 50);
      expect(await pending).toMatchObject({ kind: 'cancelled' });
    } finally {
      session.close();
    }
  });
});
