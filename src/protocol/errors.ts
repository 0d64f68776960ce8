/**
 * Every error tern reports to a client, in one catalogue (as fastify's errors.js):
 * a stable code, the HTTP status and the gRPC status it maps to. Transports never
 * invent statuses; they look them up here.
 */

/** gRPC status codes (grpc/status.h); kept numeric so protocol/ has no grpc dependency. */
export const GrpcStatus = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5,
  ALREADY_EXISTS: 6, PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9,
  ABORTED: 10, OUT_OF_RANGE: 11, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

interface ErrorKind { http: number; grpc: number }

export const ERROR_KINDS = {
  BAD_REQUEST: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  MALFORMED_JSON: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  BAD_TENSOR: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  BAD_BINARY_HEADER: { http: 400, grpc: GrpcStatus.INVALID_ARGUMENT },
  UNSUPPORTED_MEDIA_TYPE: { http: 415, grpc: GrpcStatus.INVALID_ARGUMENT },
  UNAUTHORIZED: { http: 401, grpc: GrpcStatus.UNAUTHENTICATED },
  FORBIDDEN: { http: 403, grpc: GrpcStatus.PERMISSION_DENIED },
  NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  CONFLICT: { http: 409, grpc: GrpcStatus.FAILED_PRECONDITION },
  MODEL_NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  VERSION_NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  APP_NOT_FOUND: { http: 404, grpc: GrpcStatus.NOT_FOUND },
  ROUTE_NOT_FOUND: { http: 404, grpc: GrpcStatus.UNIMPLEMENTED },
  BODY_TOO_LARGE: { http: 413, grpc: GrpcStatus.RESOURCE_EXHAUSTED },
  MODEL_UNAVAILABLE: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  QUEUE_FULL: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  DEADLINE_EXCEEDED: { http: 504, grpc: GrpcStatus.DEADLINE_EXCEEDED },
  /** A gateway could not get an answer from any replica (connection refused, reset, ...). */
  UPSTREAM_FAILED: { http: 502, grpc: GrpcStatus.UNAVAILABLE },
  BROKER_UNAVAILABLE: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  /** A call to a node's agent cannot be made or was cut off (node down, agent reconnected). */
  NODE_UNAVAILABLE: { http: 503, grpc: GrpcStatus.UNAVAILABLE },
  /** An agent is already running as many calls from the control plane as it allows. */
  TOO_MANY_CALLS: { http: 429, grpc: GrpcStatus.RESOURCE_EXHAUSTED },
  INFERENCE_FAILED: { http: 500, grpc: GrpcStatus.INTERNAL },
  INTERNAL: { http: 500, grpc: GrpcStatus.INTERNAL },
} as const satisfies Record<string, ErrorKind>;

export type ErrorCode = keyof typeof ERROR_KINDS;

export class TernError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = 'TernError';
    this.code = code;
  }
  get httpStatus(): number { return ERROR_KINDS[this.code].http; }
  get grpcStatus(): number { return ERROR_KINDS[this.code].grpc; }
}

/** Shorthand for the most common kind: a request that names something wrong. */
export function badRequest(message: string): TernError {
  return new TernError('BAD_REQUEST', message);
}

export function badTensor(message: string): TernError {
  return new TernError('BAD_TENSOR', message);
}

/** A zod failure as one line: `path: message; path: message`. */
export function formatZodError(err: { issues: { path: PropertyKey[]; message: string }[] }): string {
  return err.issues.map((i) => `${i.path.length ? i.path.map(String).join('.') : '(root)'}: ${i.message}`).join('; ');
}

/** Any thrown value as a TernError; unknown failures become INTERNAL with their message. */
export function asTernError(err: unknown): TernError {
  if (err instanceof TernError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new TernError('INTERNAL', message);
}
