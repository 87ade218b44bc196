import { performance } from 'node:perf_hooks';
import { memoryUsage } from 'node:process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { GlibcMalloc } from './malloc.js';

export interface IdleMemoryOptions {
  /** How often the event loop's utilization is sampled. */
  readonly checkMs?: number;
  /** A sample below this utilization (0–1) counts as idle. */
  readonly idleUtilization?: number;
  /** How many idle samples in a row make the daemon idle. */
  readonly idleSamples?: number;
  /** Growth of the resident set since the last trim (bytes) that makes an idle sample trim again. */
  readonly trimGrowth?: number;
  /** Periodic trim regardless of activity. */
  readonly trimEveryMs?: number;
  /** glibc's allocator (`tuneMalloc`); none where the C library is another. */
  readonly malloc?: GlibcMalloc;
}

/** What one sample of the event loop calls for. */
export interface IdleAction {
  /** A full V8 collection (before the trim). */
  readonly collect: boolean;
  /** malloc_trim. */
  readonly trim: boolean;
  /** The allocator's mode changes (`GlibcMalloc.busy` / `idle`). */
  readonly mode?: 'busy' | 'idle';
}

/**
 * The decision behind `returnMemoryWhenIdle`, one sample at a time. It starts busy (a daemon starting is a
 * burst of work). A busy sample makes it busy at once; `idleSamples` idle samples in a row make it idle, which
 * collects and trims; while idle, a sample trims again once the resident set has grown by `trimGrowth` since
 * the last trim (memory freed by threads the event loop does not see). `trimmed` reports the resident set
 * right after a trim.
 */
export function idlePolicy(opts: {
  readonly idleUtilization: number;
  readonly idleSamples: number;
  readonly trimGrowth: number;
}): { sample(utilization: number, rss: number): IdleAction; trimmed(rss: number): void } {
  let busy = true;
  let quiet = 0;
  let afterTrim = Number.POSITIVE_INFINITY;
  const none: IdleAction = { collect: false, trim: false };
  return {
    sample(utilization, rss) {
      if (utilization > opts.idleUtilization) {
        quiet = 0;
        if (busy) return none;
        busy = true;
        return { collect: false, trim: false, mode: 'busy' };
      }
      quiet++;
      if (busy) {
        if (quiet < opts.idleSamples) return none;
        busy = false;
        return { collect: true, trim: true, mode: 'idle' };
      }
      return rss - afterTrim >= opts.trimGrowth ? { collect: false, trim: true } : none;
    },
    trimmed(rss) {
      afterTrim = rss;
    },
  };
}

/**
 * Gives memory back to the system when the daemon goes quiet, as Go's scavenger does for containerd.
 *
 * V8 sizes its heap for the last burst of work (a pull streams hundreds of MB through it) and collects it
 * only under pressure, and glibc keeps what is freed in its malloc arenas for the next allocations. So after a
 * burst the resident set stays where the burst left it. Once the event loop has been idle for `idleSamples`
 * samples (5 × 1 s), a full collection and malloc_trim(3) run (tens of milliseconds, only when nothing is
 * waiting on the loop), and the allocator goes idle: V8's compiler threads still work, tiering up PGlite's
 * functions that the periodic queries made hot, and their arenas now shrink as they free (see `tuneMalloc`);
 * what they leave below an arena's top is trimmed once the resident set has grown by `trimGrowth` (2 MB). The
 * first busy sample (a second at most into a pull) puts the allocator back in its busy mode. A trim also runs
 * periodically, for a daemon that is never idle. Returns a stop function.
 */
export function returnMemoryWhenIdle(opts: IdleMemoryOptions = {}): () => void {
  const malloc = opts.malloc;
  const gc = fullCollection();
  const policy = idlePolicy({
    idleUtilization: opts.idleUtilization ?? 0.02,
    idleSamples: opts.idleSamples ?? 5,
    trimGrowth: opts.trimGrowth ?? 2 * 1024 * 1024,
  });
  const trimNow = malloc
    ? () => {
        malloc.trim();
        policy.trimmed(memoryUsage.rss());
      }
    : undefined;
  let last = performance.eventLoopUtilization();
  const check = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const { utilization } = performance.eventLoopUtilization(now, last);
    last = now;
    const action = policy.sample(utilization, memoryUsage.rss());
    if (action.mode) malloc?.[action.mode]();
    if (action.collect) gc?.();
    if (action.trim) trimNow?.();
    // What the collection itself used is not work.
    if (action.collect || action.trim) last = performance.eventLoopUtilization();
  }, opts.checkMs ?? 1_000);
  const every = trimNow ? setInterval(trimNow, opts.trimEveryMs ?? 60_000) : undefined;
  check.unref();
  every?.unref();
  return () => {
    clearInterval(check);
    if (every) clearInterval(every);
  };
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
