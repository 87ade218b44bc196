/**
 * Layer extractions on a worker thread (see extract-thread.ts), one after another: each job's blob bytes
 * arrive as messages, the rest is `createExtract`, unchanged, with its stall guard, digests and path checks.
 * Posts `done` with the result or `error` with the failure's errdefs code and message once every stage of
 * the job has torn down; the thread is then ready for the next job.
 */
import { parentPort } from 'node:worker_threads';
import { backgroundContext } from '@berth/common/context';
import { ErrorCode, ServiceError } from '@berth/common/errors';
import type { LogFields, Logger } from '@berth/common/log';
import { discardSpareTar, prepareSpareTar } from '../archive/tar-process.js';
import { createExtract } from './extract.js';
import type { ExtractJob, ToMain, ToWorker } from './extract-thread.js';

const port = parentPort;
if (!port) throw new Error('extract-worker runs as a worker thread');
const post = (m: ToMain): void => port.postMessage(m);

/** Log lines go to the call's logger on the main thread, which filters and writes them. */
function portLogger(base: LogFields): Logger {
  const emit =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (msg: string, fields?: LogFields): void => {
      const all = Object.entries({ ...base, ...fields }).map(([k, v]) => [k, v instanceof Error ? v.message : v]);
      post({ type: 'log', level, msg, fields: Object.fromEntries(all) });
    };
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    child: (fields) => portLogger({ ...base, ...fields }),
  };
}
const log = portLogger({});

/** The job running: its bytes so far and how their stream ended. */
interface Running {
  readonly chunks: Uint8Array[];
  ended: boolean;
  failed?: ServiceError;
  wake?: () => void;
  readonly controller: AbortController;
}
let running: Running | undefined;

async function* bytes(job: Running): AsyncGenerator<Buffer> {
  for (;;) {
    const c = job.chunks.shift();
    if (c) {
      post({ type: 'ack', bytes: c.byteLength });
      yield Buffer.from(c.buffer, c.byteOffset, c.byteLength);
      continue;
    }
    if (job.failed) throw job.failed;
    if (job.ended) return;
    await new Promise<void>((r) => {
      job.wake = r;
    });
  }
}

/**
 * A spare tar for the next layer, started once this thread has been idle a moment: not at once, when the
 * pull this layer belongs to is still answering its last calls (a fork stalls the main thread too).
 */
const spareAfterMs = 250;
let spareTimer: NodeJS.Timeout | undefined;
function spareSoon(): void {
  clearTimeout(spareTimer);
  spareTimer = setTimeout(() => {
    if (!running) prepareSpareTar();
  }, spareAfterMs);
}

function start(job: ExtractJob): void {
  clearTimeout(spareTimer);
  const r: Running = { chunks: [], ended: false, controller: new AbortController() };
  running = r;
  const extract = createExtract({ stallMs: job.stallMs });
  extract(backgroundContext(log, job.namespace, r.controller.signal), job.desc, job.target, {
    bytes: bytes(r),
    verified: job.verified,
  })
    .then(
      (result): ToMain => ({ type: 'done', result }),
      (e: unknown): ToMain =>
        e instanceof ServiceError
          ? { type: 'error', code: e.code, message: e.message }
          : { type: 'error', code: ErrorCode.Unknown, message: (e as Error).message ?? String(e) },
    )
    .then((m) => {
      running = undefined;
      post(m);
      spareSoon();
    });
}

port.on('message', (m: ToWorker) => {
  if (m.type === 'job') return start(m.job);
  if (m.type === 'retire') {
    // This thread's children are reaped by this thread: the spare ends before the thread does.
    clearTimeout(spareTimer);
    void discardSpareTar().then(() => process.exit(0));
    return;
  }
  const r = running;
  if (!r) return;
  switch (m.type) {
    case 'chunk':
      r.chunks.push(m.data);
      break;
    case 'end':
      r.ended = true;
      break;
    case 'fail':
      r.failed ??= new ServiceError(m.code, m.message);
      break;
    case 'abort':
      r.controller.abort(new ServiceError(m.code, m.message));
      break;
  }
  r.wake?.();
  r.wake = undefined;
});
