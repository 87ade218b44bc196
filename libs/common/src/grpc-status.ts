import * as grpc from '@grpc/grpc-js';
import { ErrorCode, ServiceError } from './errors.js';

/** errdefs code → gRPC status code; the table containerd clients depend on. */
const toStatus: Record<ErrorCode, grpc.status> = {
  invalid_argument: grpc.status.INVALID_ARGUMENT,
  not_found: grpc.status.NOT_FOUND,
  already_exists: grpc.status.ALREADY_EXISTS,
  failed_precondition: grpc.status.FAILED_PRECONDITION,
  unavailable: grpc.status.UNAVAILABLE,
  not_implemented: grpc.status.UNIMPLEMENTED,
  aborted: grpc.status.ABORTED,
  out_of_range: grpc.status.OUT_OF_RANGE,
  resource_exhausted: grpc.status.RESOURCE_EXHAUSTED,
  permission_denied: grpc.status.PERMISSION_DENIED,
  unauthenticated: grpc.status.UNAUTHENTICATED,
  data_loss: grpc.status.DATA_LOSS,
  internal: grpc.status.INTERNAL,
  canceled: grpc.status.CANCELLED,
  deadline_exceeded: grpc.status.DEADLINE_EXCEEDED,
  unknown: grpc.status.UNKNOWN,
};

const codeNames = new Set<string>(Object.values(ErrorCode));

const fromStatus = new Map<number, ErrorCode>(
  Object.entries(toStatus).map(([code, status]) => [status, code as ErrorCode]),
);

export interface GrpcStatusError {
  code: grpc.status;
  details: string;
  metadata?: grpc.Metadata;
}

/** Whether `e` already is a gRPC status (from grpc-js or an upstream call); those pass through unchanged. */
export function isGrpcStatusError(e: unknown): e is GrpcStatusError & Error {
  return (
    typeof e === 'object' &&
    e !== null &&
    !(e instanceof ServiceError) &&
    typeof (e as { code?: unknown }).code === 'number' &&
    typeof (e as { details?: unknown }).details === 'string'
  );
}

/** Turns any thrown value into the status sent to the client; unclassified errors become UNKNOWN. */
export function toGrpcError(e: unknown): GrpcStatusError {
  if (isGrpcStatusError(e)) return { code: e.code, details: e.details };
  if (e instanceof ServiceError) return { code: toStatus[e.code], details: e.message };
  // Errors of leaf modules that carry an errdefs code without depending on ServiceError (e.g. filter syntax).
  const code = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
  if (typeof code === 'string' && codeNames.has(code)) {
    return { code: toStatus[code as ErrorCode], details: (e as Error).message };
  }
  if (typeof e === 'object' && e !== null && (e as { name?: unknown }).name === 'AbortError') {
    return { code: grpc.status.CANCELLED, details: 'context canceled' };
  }
  return { code: grpc.status.UNKNOWN, details: e instanceof Error ? e.message : String(e) };
}

/** The client-side inverse: a gRPC error from a call becomes a ServiceError with the same code and message. */
export function fromGrpcError(e: unknown): ServiceError {
  if (e instanceof ServiceError) return e;
  if (isGrpcStatusError(e)) {
    return new ServiceError(fromStatus.get(e.code) ?? ErrorCode.Unknown, e.details, { cause: e });
  }
  return new ServiceError(ErrorCode.Unknown, e instanceof Error ? e.message : String(e), { cause: e });
}
