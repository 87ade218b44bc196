import { performance } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import koffi from 'koffi';

export interface IdleMemoryOptions {
  /** How often the event loop's utilization is sampled. */
  readonly checkMs?: number;
  /** A sample below this utilization (0–1) counts as idle. */
  readonly idleUtilization?: number;
  /** Periodic trim regardless of activity. */
  readonly trimEveryMs?: number;
}

/**
 * Gives memory back to the system when the daemon goes quiet, as Go's scavenger does for containerd.
 *
 * V8 sizes its heap for the last burst of work (a pull streams hundreds of MB through it) and collects it
 * only under pressure, and glibc keeps what is freed in its malloc arenas (V8's compiler threads and libuv's
 * pool leave tens of MB there; malloc_trim(3) hands it back). So after a burst the resident set stays where
 * the burst left it. Once a sample of the event loop shows it idle after work, a full collection and a trim
 * run (tens of milliseconds, only when nothing is waiting on the loop); a trim also runs periodically.
 * Returns a stop function.
 */
export function returnMemoryWhenIdle(opts: IdleMemoryOptions = {}): () => void {
  const checkMs = opts.checkMs ?? 5_000;
  const idleUtilization = opts.idleUtilization ?? 0.02;
  const trim = mallocTrim();
  const gc = fullCollection();
  let last = performance.eventLoopUtilization();
  let worked = true;
  const check = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const { utilization } = performance.eventLoopUtilization(now, last);
    last = now;
    if (utilization > idleUtilization) {
      worked = true;
      return;
    }
    if (!worked) return;
    worked = false;
    gc?.();
    trim?.();
    // What the collection itself used is not work.
    last = performance.eventLoopUtilization();
  }, checkMs);
  const every = trim ? setInterval(trim, opts.trimEveryMs ?? 60_000) : undefined;
  check.unref();
  every?.unref();
  return () => {
    clearInterval(check);
    if (every) clearInterval(every);
  };
}

function mallocTrim(): (() => void) | undefined {
  try {
    const trim = koffi.load('libc.so.6').func('int malloc_trim(size_t)');
    return () => trim(0);
  } catch {
    return undefined; // not glibc: nothing to trim this way
  }
}

/** V8's full collection, without starting node with --expose-gc. */
function fullCollection(): (() => void) | undefined {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? () => (gc as () => void)() : undefined;
  } catch {
    return undefined;
  }
}
