import { failedPrecondition } from '@berth/common/errors';
import type { Logger } from '@berth/common/log';
import { nextIntervalMs, type SchedulerConfig } from './config.js';

/**
 * What the scheduler runs; `pauseMs` is the time writers were held out (containerd's Stats.Elapsed). `idle` marks
 * a run only the idle trigger asked for: it must remove something only when an expiry made it collectable.
 */
export type Collect<S extends { pauseMs: number }> = (run: { readonly idle: boolean }) => Promise<S>;

export interface Scheduler<S> {
  /** Triggers a collection and resolves with the stats of the first one to start after this call. */
  scheduleAndWait(): Promise<S>;
  /** A write happened somewhere; `deletion` when it removed something (containerd's mutation callback). */
  mutated(deletion: boolean): void;
  close(): void;
}

/**
 * containerd's gc scheduler loop (gc/scheduler/scheduler.go) as timers: runs are skipped unless triggered, a
 * deletion happened, or enough mutations accumulated; the interval keeps the pause fraction; a failed run is
 * retried one interval plus a second later and its waiters get "gc failed". Plus the idle trigger.
 */
export function startScheduler<S extends { pauseMs: number }>(
  config: SchedulerConfig,
  collect: Collect<S>,
  log: Logger,
  /** False while this replica may not collect (not the leader): scheduled runs wait, waiters are refused. */
  enabled: () => boolean = () => true,
): Scheduler<S> {
  let timer: NodeJS.Timeout | undefined;
  let nextAt: number | undefined;
  let lastAt: number | undefined;
  let interval = 1000;
  let pauseTotal = 0;
  let collections = 0;
  let triggered = false;
  let deletions = 0;
  let mutations = 0;
  let running = false;
  let closed = false;
  let waiters: Array<{ resolve: (s: S) => void; reject: (e: Error) => void }> = [];
  /** Events that arrived during a run, handled after it as containerd's channel would deliver them. */
  let queued: Array<{ ts: number; mutation: boolean; deletion: boolean }> = [];

  const schedule = (ms: number): void => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    const capped = config.idleIntervalMs > 0 ? Math.min(ms, config.idleIntervalMs) : ms;
    nextAt = Date.now() + capped;
    timer = setTimeout(fire, capped);
    timer.unref();
  };

  const fire = (): void => {
    timer = undefined;
    if (!enabled()) {
      schedule(interval);
      return;
    }
    const idleDue = config.idleIntervalMs > 0 && lastAt !== undefined && Date.now() - lastAt >= config.idleIntervalMs;
    const due =
      triggered ||
      (config.automatic &&
        (lastAt === undefined ||
          deletions > 0 ||
          (config.mutationThreshold > 0 && mutations >= config.mutationThreshold)));
    if (!due && !(config.automatic && idleDue)) {
      schedule(interval);
      return;
    }
    void run(!due);
  };

  const handle = (e: { ts: number; mutation: boolean; deletion: boolean }): void => {
    if (lastAt !== undefined && lastAt > e.ts) return;
    if (e.deletion) deletions++;
    if (e.mutation) mutations++;
    else triggered = true;
    if (
      triggered ||
      (config.deletionThreshold > 0 && deletions >= config.deletionThreshold) ||
      (nextAt === undefined &&
        ((config.deletionThreshold === 0 && deletions > 0) ||
          (config.mutationThreshold > 0 && mutations >= config.mutationThreshold)))
    ) {
      if (nextAt === undefined || nextAt > Date.now() + config.scheduleDelayMs) schedule(config.scheduleDelayMs);
    }
  };

  const event = (e: { ts: number; mutation: boolean; deletion: boolean }): void => {
    if (running) queued.push(e);
    else handle(e);
  };

  const run = async (idle = false): Promise<void> => {
    running = true;
    const mine = waiters;
    waiters = [];
    const previousAt = lastAt;
    try {
      const stats = await collect({ idle });
      pauseTotal += stats.pauseMs;
      collections++;
      triggered = false;
      deletions = 0;
      mutations = 0;
      interval = nextIntervalMs(config.pauseThreshold, pauseTotal, collections, interval);
      lastAt = Date.now();
      schedule(interval);
      for (const w of mine) w.resolve(stats);
    } catch (e) {
      log.error('garbage collection failed', { err: e });
      const was = nextAt !== undefined && previousAt !== undefined ? nextAt - previousAt : interval;
      lastAt = Date.now();
      schedule(was + 1000);
      for (const w of mine) w.reject(new Error('gc failed', { cause: e }));
    } finally {
      running = false;
      const pending = queued;
      queued = [];
      for (const e of pending) handle(e);
      // Waiters that came during the run asked for a collection that starts after their call.
      if (waiters.length > 0 && !triggered) {
        triggered = true;
        schedule(config.scheduleDelayMs);
      }
    }
  };

  if (config.startupDelayMs > 0) schedule(config.startupDelayMs);

  return {
    scheduleAndWait() {
      return new Promise<S>((resolve, reject) => {
        if (!enabled()) {
          reject(failedPrecondition('this gc replica is not the leader'));
          return;
        }
        waiters.push({ resolve, reject });
        event({ ts: Date.now(), mutation: false, deletion: false });
      });
    },
    mutated(deletion) {
      event({ ts: Date.now(), mutation: true, deletion });
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      for (const w of waiters) w.reject(new Error('gc scheduler closed'));
      waiters = [];
    },
  };
}
