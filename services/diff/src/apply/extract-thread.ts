import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { withSignal } from '@berth/common/context';
import { ErrorCode, ServiceError } from '@berth/common/errors';
import type { LogFields } from '@berth/common/log';
import type { Descriptor } from '@berth/common/oci';
import { type Extract, type ExtractDeps, type Extracted, type ExtractTarget, readBlob } from './extract.js';

/** What a worker is started with: one layer's extraction. */
export interface ExtractJob {
  readonly desc: Descriptor;
  readonly target: ExtractTarget;
  readonly namespace: string | undefined;
  /** The bytes' digest is checked by whoever hands them over (see `Extract`'s `source`). */
  readonly verified: boolean;
  readonly stallMs: number;
}

export type ToWorker =
  | { readonly type: 'job'; readonly job: ExtractJob }
  | { readonly type: 'chunk'; readonly data: Uint8Array }
  | { readonly type: 'end' }
  /** The blob's bytes failed to arrive: the extraction fails (and tears down) with this. */
  | { readonly type: 'fail'; readonly code: ErrorCode; readonly message: string }
  /** The call was given up. */
  | { readonly type: 'abort'; readonly code: ErrorCode; readonly message: string }
  /** The thread ends: it stops its spare tar first (see tar-process.ts), then exits. */
  | { readonly type: 'retire' };

export type ToMain =
  | { readonly type: 'ack'; readonly bytes: number }
  | { readonly type: 'done'; readonly result: Extracted }
  | { readonly type: 'error'; readonly code: ErrorCode; readonly message: string }
  | {
      readonly type: 'log';
      readonly level: 'debug' | 'info' | 'warn' | 'error';
      readonly msg: string;
      readonly fields: LogFields;
    };

export interface ThreadedExtractDeps extends ExtractDeps {
  /** Threads kept waiting for the next layer (the rest end as their layer does). */
  readonly idleThreads?: number;
  /** How long a waiting thread is kept. */
  readonly idleMs?: number;
}

/** Bytes handed to a worker and not yet taken by its decompressor. */
const inFlightBytes = 8 * 1024 * 1024;

/**
 * The built worker module. Under the test runner this module is the TypeScript source, and the worker runs the
 * compiled one (`pnpm test` builds first).
 */
function workerModule(): URL {
  const here = new URL('./extract-worker.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  return new URL(here.href.replace('/src/apply/', '/dist/apply/'));
}

/** One worker thread and the job it runs, if any. */
interface Thread {
  readonly worker: Worker;
  /** Set while a job runs: where the worker's messages go. */
  onMessage?: (m: ToMain) => void;
  /** Set while a job runs: the worker failed or exited. */
  onGone?: (e: ServiceError) => void;
  idleTimer?: NodeJS.Timeout;
}

/**
 * Worker threads for extractions: a thread's start costs ~100 ms of CPU (a new isolate loading the modules),
 * so up to `idle` of them wait `idleMs` for the next layer of a pull, unreferenced (they never keep the process
 * up), then end and give their memory back.
 */
function threadPool(url: URL, idle: number, idleMs: number) {
  const waiting: Thread[] = [];
  const spawnThread = (): Thread => {
    const t: Thread = { worker: new Worker(url) };
    t.worker.on('message', (m: ToMain) => t.onMessage?.(m));
    t.worker.on('error', (e) =>
      t.onGone?.(new ServiceError(ErrorCode.Unknown, `extraction thread failed: ${e.message}`)),
    );
    t.worker.on('exit', (code) => {
      const i = waiting.indexOf(t);
      if (i !== -1) waiting.splice(i, 1);
      t.onGone?.(new ServiceError(ErrorCode.Unknown, `extraction thread exited (${code})`));
    });
    return t;
  };
  /** Asks the thread to end (after its spare tar); one that does not within a second is terminated. */
  const retire = (t: Thread): void => {
    t.worker.postMessage({ type: 'retire' } satisfies ToWorker);
    setTimeout(() => void t.worker.terminate(), 1_000).unref();
  };
  return {
    take(): Thread {
      const t = waiting.pop() ?? spawnThread();
      clearTimeout(t.idleTimer);
      t.worker.ref();
      return t;
    },
    /** A thread whose job ended with an answer; any other is ended. */
    give(t: Thread, answered: boolean): void {
      t.onMessage = undefined;
      t.onGone = undefined;
      if (!answered || waiting.length >= idle) {
        retire(t);
        return;
      }
      t.worker.unref();
      t.idleTimer = setTimeout(() => {
        const i = waiting.indexOf(t);
        if (i !== -1) waiting.splice(i, 1);
        retire(t);
      }, idleMs);
      t.idleTimer.unref();
      waiting.push(t);
    },
  };
}

/**
 * `createExtract` with each layer's decompression, digests, path checks and tar feeding on a worker thread, so
 * that layers extracted at once (unpack-ahead) use the machine's cores, and the thread that serves gRPC only
 * reads the blob and hands its bytes over. The result and the errors are those of `createExtract` (errdefs
 * code and message); a read that fails fails the call with the read's own error.
 *
 * Every layer, whatever its size. A small layer extracted in line (decompressing, checking, feeding tar, and
 * forking tar, which blocks a thread for 6-20 ms in a process of berthd's size) ran during the pull's downloads
 * with unpack-ahead, and delayed the gRPC answers the pull waits on: `ctr images pull` ends its download phase
 * on a 100 ms tick of its progress display, so those milliseconds cost a whole tick (busybox: 250-270 instead
 * of 145-160 ms, bench/README.md, session 11).
 */
export function createThreadedExtract(deps: ThreadedExtractDeps): Extract {
  const pool = threadPool(workerModule(), deps.idleThreads ?? 2, deps.idleMs ?? 10_000);
  return async (ctx, desc, target, source) => {
    const job: ExtractJob = {
      desc,
      target,
      namespace: ctx.namespace,
      verified: source?.verified === true,
      stallMs: deps.stallMs ?? 0,
    };
    const thread = pool.take();
    const reading = new AbortController();
    const readCtx = withSignal(ctx, AbortSignal.any([ctx.signal, reading.signal]));
    let inFlight = 0;
    let resume: (() => void) | undefined;
    let answered = false;
    const result = new Promise<Extracted>((resolve, reject) => {
      const settle = (): void => {
        // Before anything else: the pump must send nothing more once the worker has answered.
        reading.abort();
        resume?.();
      };
      thread.onMessage = (m) => {
        switch (m.type) {
          case 'ack':
            inFlight -= m.bytes;
            if (inFlight <= inFlightBytes) {
              resume?.();
              resume = undefined;
            }
            break;
          case 'log':
            ctx.log[m.level](m.msg, m.fields);
            break;
          case 'done':
            answered = true;
            settle();
            resolve(m.result);
            break;
          case 'error':
            answered = true;
            settle();
            reject(new ServiceError(m.code, m.message));
            break;
        }
      };
      thread.onGone = (e) => {
        settle();
        reject(new ServiceError(e.code, `apply ${desc.digest}: ${e.message}`));
      };
    });
    const send = (m: ToWorker, transfer?: ArrayBuffer[]): void => thread.worker.postMessage(m, transfer);
    send({ type: 'job', job });
    const onAbort = (): void => {
      const r: unknown = ctx.signal.reason;
      const e =
        r instanceof ServiceError ? r : new ServiceError(ErrorCode.Canceled, `apply ${desc.digest}: context canceled`);
      send({ type: 'abort', code: e.code, message: e.message });
    };
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener('abort', onAbort, { once: true });

    const pump = async (): Promise<void> => {
      const bytes = source?.bytes ?? readBlob(deps.content, readCtx, desc.digest);
      for await (const chunk of bytes) {
        if (reading.signal.aborted) return;
        // A copy the worker owns: the chunk may be a view of a larger buffer, or written elsewhere too (a Write's
        // bytes are extracted while they are stored).
        const data = new Uint8Array(chunk.length);
        data.set(chunk);
        inFlight += data.length;
        send({ type: 'chunk', data }, [data.buffer]);
        if (inFlight > inFlightBytes) {
          await new Promise<void>((r) => {
            resume = r;
          });
          if (reading.signal.aborted) return;
        }
      }
      if (!reading.signal.aborted) send({ type: 'end' });
    };
    let readFailure: unknown;
    const pumped = pump().catch((e: unknown) => {
      if (reading.signal.aborted) return;
      readFailure = e;
      const se = e instanceof ServiceError ? e : undefined;
      send({ type: 'fail', code: se?.code ?? ErrorCode.Unknown, message: (e as Error).message ?? String(e) });
    });
    try {
      const extracted = await result;
      await pumped;
      return extracted;
    } catch (e) {
      // The pump is not waited for: a read that stopped sending may never end (the inline guard leaves it
      // too); the aborted signal ends a content read.
      // A read that failed on its own (not because the call was given up) is the cause.
      throw ctx.signal.aborted ? e : (readFailure ?? e);
    } finally {
      ctx.signal.removeEventListener('abort', onAbort);
      pool.give(thread, answered);
    }
  };
}
