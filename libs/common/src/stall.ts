import type { RequestContext } from './context.js';
import { ErrorCode, ServiceError } from './errors.js';
import type { Logger } from './log.js';

/** How long an internal stream may go without progress before its call fails, unless configured. */
export const defaultStallMs = 60_000;

/**
 * The progress watch of one call whose work is a chain of streams (content → decompressor → tar, or a client's
 * Write stream into an ingest). Every wait of every stage goes through `wait`, which rejects when:
 * - the stage makes no progress for `ms` (deadline_exceeded naming the stage; logged with the stage), or
 * - the call is cancelled (the client went away or its deadline passed).
 * Either way `signal` aborts, so every stage tears itself down (kills its child, cancels its stream) at
 * once instead of waiting for an end that will not come. Nothing here runs after `close`.
 */
export class StallGuard {
  private readonly controller = new AbortController();
  private readonly onParentAbort: () => void;

  constructor(
    /** What the call does, for the message: `diff apply`, `content write`. */
    private readonly what: string,
    readonly ms: number,
    private readonly log: Logger,
    private readonly parent: AbortSignal,
  ) {
    this.onParentAbort = () => this.controller.abort(parent.reason);
    if (parent.aborted) this.onParentAbort();
    else parent.addEventListener('abort', this.onParentAbort, { once: true });
  }

  /** Aborted on cancellation or on the first stall; its reason is the error the call fails with. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The reason the guard aborted as a ServiceError (canceled for a client that went away). */
  failure(): ServiceError {
    const r: unknown = this.controller.signal.reason;
    if (r instanceof ServiceError) return r;
    return new ServiceError(ErrorCode.Canceled, `${this.what}: context canceled`, { cause: r });
  }

  /** Throws the guard's failure when it has aborted. */
  check(): void {
    if (this.controller.signal.aborted) throw this.failure();
  }

  /** Waits for `p`, a step of `stage`; rejects on a stall of `ms` or when the guard aborts. */
  wait<T>(p: Promise<T>, stage: string): Promise<T> {
    if (this.controller.signal.aborted) {
      p.catch(() => undefined);
      return Promise.reject(this.failure());
    }
    return new Promise<T>((resolve, reject) => {
      const signal = this.controller.signal;
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        done();
        reject(this.failure());
      };
      const timer = setTimeout(() => this.stall(stage), this.ms);
      signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (v) => {
          done();
          resolve(v);
        },
        (e: unknown) => {
          done();
          // A stage failing because the guard tore it down reports why the guard did.
          reject(signal.aborted ? this.failure() : e);
        },
      );
    });
  }

  /** `source`, each item of which must arrive within `ms`. */
  async *iterate<T>(source: AsyncIterable<T>, stage: string): AsyncGenerator<T> {
    const it = source[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        const r = await this.wait(it.next(), stage);
        if (r.done) {
          finished = true;
          return;
        }
        yield r.value;
      }
    } finally {
      // Not awaited: a stalled source cannot finish its return until its pending next settles, and its own
      // teardown hangs off `signal` anyway.
      if (!finished) it.return?.().catch(() => undefined);
    }
  }

  /** Fails the call as a stall of `stage` (also for stages that watch their own progress). */
  stall(stage: string): void {
    if (this.controller.signal.aborted) return;
    const seconds = (this.ms / 1000).toFixed(this.ms < 1000 ? 3 : 0);
    this.log.error('stream stalled', { what: this.what, stage, idleMs: this.ms });
    this.controller.abort(
      new ServiceError(
        ErrorCode.DeadlineExceeded,
        `${this.what}: ${stage} made no progress for ${seconds}s: context deadline exceeded`,
      ),
    );
  }

  /** Detaches from the parent signal; call once the work is over. */
  close(): void {
    this.parent.removeEventListener('abort', this.onParentAbort);
  }
}

/** A guard for the work of `ctx`; `ms` <= 0 means the default. */
export function stallGuard(ctx: RequestContext, what: string, ms: number): StallGuard {
  return new StallGuard(what, ms > 0 ? ms : defaultStallMs, ctx.log, ctx.signal);
}
