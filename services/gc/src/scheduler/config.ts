/**
 * containerd's `io.containerd.gc.v1.scheduler` configuration (gc/scheduler/scheduler.go), same keys, same
 * defaults and clamps, plus Berth's `idle_interval`: containerd never collects while nothing changes, so an
 * expired lease or image on an idle daemon lives forever (containerd #6294); here a collection runs at least
 * this often.
 */
export interface SchedulerConfig {
  /**
   * Fraction of time writers may be paused by collections: after each run the next is scheduled
   * avg/threshold − avg later, avg being the mean pause (never taken below 5 ms). Clamped to [0, 0.5];
   * 0 keeps the 1 s interval. Default 0.02.
   */
  readonly pauseThreshold: number;
  /** Deletions that trigger a collection at once; 0: none does, but any makes the next scheduled run execute. Default 0. */
  readonly deletionThreshold: number;
  /** Mutations without which a scheduled run is skipped (unless triggered or a deletion happened). Default 100. */
  readonly mutationThreshold: number;
  /** Delay between a trigger and the run it causes. Default 0. */
  readonly scheduleDelayMs: number;
  /** Delay before the first run. Default 100 ms. */
  readonly startupDelayMs: number;
  /** Berth: longest time between two collections, whatever happened. Default 30 s; 0 disables. */
  readonly idleIntervalMs: number;
  /** Berth: false runs only the collections someone asked for (sync deletes, `berth gc`). Default true. */
  readonly automatic: boolean;
}

export const defaultSchedulerConfig: SchedulerConfig = {
  pauseThreshold: 0.02,
  deletionThreshold: 0,
  mutationThreshold: 100,
  scheduleDelayMs: 0,
  startupDelayMs: 100,
  idleIntervalMs: 30_000,
  automatic: true,
};

/** containerd's clamps: thresholds and delays are never negative, the pause threshold at most 0.5. */
export function normalizeSchedulerConfig(c: Partial<SchedulerConfig>): SchedulerConfig {
  const v = { ...defaultSchedulerConfig, ...c };
  return {
    pauseThreshold: Math.min(Math.max(v.pauseThreshold, 0), 0.5),
    deletionThreshold: Math.max(v.deletionThreshold, 0),
    mutationThreshold: Math.max(v.mutationThreshold, 0),
    scheduleDelayMs: Math.max(v.scheduleDelayMs, 0),
    startupDelayMs: Math.max(v.startupDelayMs, 0),
    idleIntervalMs: Math.max(v.idleIntervalMs, 0),
    automatic: v.automatic,
  };
}

/** The next interval after collections whose pauses add up to `totalMs` over `count` runs. */
export function nextIntervalMs(pauseThreshold: number, totalMs: number, count: number, fallbackMs: number): number {
  if (pauseThreshold <= 0 || count === 0) return fallbackMs;
  const avg = Math.max(totalMs / count, 5);
  return avg / pauseThreshold - avg;
}

/** Go duration text as containerd exports it in plugin metadata (`100ms`, `0s`, `30s`). */
export function goDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
