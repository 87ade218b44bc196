import { failedPrecondition, wrap } from './errors.js';
import { validateIdentifier } from './identifiers.js';
import type { Logger } from './log.js';

/** gRPC metadata headers containerd clients send; names are part of the wire contract. */
export const NamespaceHeader = 'containerd-namespace';
export const LeaseHeader = 'containerd-lease';

/**
 * Per-request data every domain method takes first, like containerd's `context.Context`.
 * The namespace is as the client sent it: call `requireNamespace` to validate it.
 */
export interface RequestContext {
  readonly namespace: string | undefined;
  readonly lease: string | undefined;
  /** Aborted when the client cancels or the deadline passes. */
  readonly signal: AbortSignal;
  readonly log: Logger;
}

/** What a client call carries to the next hop: the namespace, the lease (if any) and a signal that cancels it. */
export type CallContext = Pick<RequestContext, 'namespace' | 'lease' | 'signal'>;

/** The valid namespace of the request; failed_precondition when absent, invalid_argument when malformed. */
export function requireNamespace(ctx: RequestContext): string {
  const ns = ctx.namespace;
  if (ns === undefined || ns === '') throw failedPrecondition('namespace is required');
  try {
    validateIdentifier(ns);
  } catch (e) {
    throw wrap(e, 'namespace validation');
  }
  return ns;
}

/** A context for work started by the service itself (startup, background loops). */
export function backgroundContext(log: Logger, namespace?: string, signal?: AbortSignal): RequestContext {
  return { namespace, lease: undefined, signal: signal ?? new AbortController().signal, log };
}

/**
 * A request seen with another namespace or lease. Its signal and logger are read through from the original
 * when asked for, so lazily made ones stay unmade unless used. A class rather than an object literal with
 * getters: V8 builds each of those slowly (about 1 µs), and a context is made for every call.
 */
class ContextView implements RequestContext {
  constructor(
    private readonly base: RequestContext,
    readonly namespace: string | undefined,
    readonly lease: string | undefined,
    private readonly ownSignal?: AbortSignal,
  ) {}

  get signal(): AbortSignal {
    return this.ownSignal ?? this.base.signal;
  }

  get log(): Logger {
    return this.base.log;
  }
}

/** The same request with `namespace` and `lease` instead of its own; signal and logger stay lazy. */
export function viewOf(ctx: RequestContext, namespace: string | undefined, lease: string | undefined): RequestContext {
  return new ContextView(ctx, namespace, lease);
}

/** The same request without its lease, for a call that must not act under it. Signal and logger stay lazy. */
export function withoutLease(ctx: RequestContext): RequestContext {
  return viewOf(ctx, ctx.namespace, undefined);
}

/** The same request with `signal` (one that aborts at least when the request's own does). */
export function withSignal(ctx: RequestContext, signal: AbortSignal): RequestContext {
  return new ContextView(ctx, ctx.namespace, ctx.lease, signal);
}
