/**
 * One error model for every Berth service, after containerd's errdefs.
 *
 * Domain code throws `ServiceError(code, message)`; exactly one function in `grpc-status.ts` turns it into a
 * gRPC status, and one turns a status back into a `ServiceError` on the client side.
 */

export const ErrorCode = {
  InvalidArgument: 'invalid_argument',
  NotFound: 'not_found',
  AlreadyExists: 'already_exists',
  FailedPrecondition: 'failed_precondition',
  Unavailable: 'unavailable',
  NotImplemented: 'not_implemented',
  Aborted: 'aborted',
  OutOfRange: 'out_of_range',
  ResourceExhausted: 'resource_exhausted',
  PermissionDenied: 'permission_denied',
  Unauthenticated: 'unauthenticated',
  DataLoss: 'data_loss',
  Internal: 'internal',
  Canceled: 'canceled',
  DeadlineExceeded: 'deadline_exceeded',
  Unknown: 'unknown',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const brand = Symbol.for('@berth/ServiceError');

export class ServiceError extends Error {
  override readonly name = 'ServiceError';
  readonly [brand] = true;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }

  /** instanceof that also matches copies of this class loaded from another package instance. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

/** The text containerd's errdefs appends to a wrapped error (`fmt.Errorf("%s: %w", msg, errdefs.ErrX)`). */
const errdefsText: Record<ErrorCode, string> = {
  invalid_argument: 'invalid argument',
  not_found: 'not found',
  already_exists: 'already exists',
  failed_precondition: 'failed precondition',
  unavailable: 'unavailable',
  not_implemented: 'not implemented',
  aborted: 'aborted',
  out_of_range: 'out of range',
  resource_exhausted: 'resource exhausted',
  permission_denied: 'permission denied',
  unauthenticated: 'unauthenticated',
  data_loss: 'data loss',
  internal: 'internal',
  canceled: 'context canceled',
  deadline_exceeded: 'context deadline exceeded',
  unknown: 'unknown',
};

/** Builds an error the way containerd words it: `<context>: <errdefs text>`, e.g. `namespace "x": not found`. */
export function errdef(code: ErrorCode, context: string, cause?: unknown): ServiceError {
  return new ServiceError(code, `${context}: ${errdefsText[code]}`, cause === undefined ? undefined : { cause });
}

export const invalidArgument = (context: string, cause?: unknown): ServiceError =>
  errdef(ErrorCode.InvalidArgument, context, cause);
export const notFound = (what: string, cause?: unknown): ServiceError => errdef(ErrorCode.NotFound, what, cause);
export const alreadyExists = (what: string, cause?: unknown): ServiceError =>
  errdef(ErrorCode.AlreadyExists, what, cause);
export const failedPrecondition = (context: string, cause?: unknown): ServiceError =>
  errdef(ErrorCode.FailedPrecondition, context, cause);
export const unavailable = (context: string, cause?: unknown): ServiceError =>
  errdef(ErrorCode.Unavailable, context, cause);
export const notImplemented = (context: string): ServiceError => errdef(ErrorCode.NotImplemented, context);
export const outOfRange = (context: string): ServiceError => errdef(ErrorCode.OutOfRange, context);
export const internal = (context: string, cause?: unknown): ServiceError => errdef(ErrorCode.Internal, context, cause);

export const codeOf = (e: unknown): ErrorCode => (e instanceof ServiceError ? e.code : ErrorCode.Unknown);
export const isNotFound = (e: unknown): boolean => codeOf(e) === ErrorCode.NotFound;
export const isAlreadyExists = (e: unknown): boolean => codeOf(e) === ErrorCode.AlreadyExists;
export const isInvalidArgument = (e: unknown): boolean => codeOf(e) === ErrorCode.InvalidArgument;
export const isFailedPrecondition = (e: unknown): boolean => codeOf(e) === ErrorCode.FailedPrecondition;
export const isUnavailable = (e: unknown): boolean => codeOf(e) === ErrorCode.Unavailable;

/** Adds context in front of the message while keeping the original code (Go's `fmt.Errorf("%s: %w")`). */
export function wrap(e: unknown, context: string): ServiceError {
  const message = e instanceof Error ? e.message : String(e);
  return new ServiceError(codeOf(e), `${context}: ${message}`, { cause: e });
}

/** Whether an error carries an errno-style `code` (Node system errors), e.g. `hasErrno(e, 'ENOENT')`. */
export function hasErrno(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === code;
}
