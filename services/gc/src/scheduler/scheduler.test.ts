import { nopLogger } from '@berth/common/log';
import { afterEach, describe, expect, it } from 'vitest';
import { defaultSchedulerConfig, goDuration, nextIntervalMs, normalizeSchedulerConfig } from './config.js';
import { type Scheduler, startScheduler } from './scheduler.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('scheduler config', () => {
  it('has containerd’s defaults and clamps', () => {
    expect(defaultSchedulerConfig).toMatchObject({
      pauseThreshold: 0.02,
      deletionThreshold: 0,
      mutationThreshold: 100,
      scheduleDelayMs: 0,
      startupDelayMs: 100,
    });
    expect(normalizeSchedulerConfig({ pauseThreshold: 0.9, mutationThreshold: -1, startupDelayMs: -5 })).toMatchObject({
      pauseThreshold: 0.5,
      mutationThreshold: 0,
      startupDelayMs: 0,
    });
    expect(normalizeSchedulerConfig({ pauseThreshold: -1 }).pauseThreshold).toBe(0);
    expect(goDuration(100)).toBe('100ms');
    expect(goDuration(0)).toBe('0s');
  });

  it('keeps the pause fraction: 10 ms pauses → 490 ms, 1 ms pauses → 245 ms (5 ms floor)', () => {
    expect(nextIntervalMs(0.02, 10, 1, 1000)).toBeCloseTo(490);
    expect(nextIntervalMs(0.02, 1, 1, 1000)).toBeCloseTo(245);
    expect(nextIntervalMs(0.02, 30, 3, 1000)).toBeCloseTo(490);
    expect(nextIntervalMs(0, 10, 1, 1000)).toBe(1000);
  });
});

describe('scheduler loop', () => {
  let s: Scheduler<{ pauseMs: number; run: number }> | undefined;
  afterEach(() => s?.close());

  const counting = (fail = () => false) => {
    let runs = 0;
    const idle: boolean[] = [];
    return {
      runs: () => runs,
      idle,
      collect: async (run: { idle: boolean }) => {
        runs++;
        idle.push(run.idle);
        if (fail()) throw new Error('boom');
        return { pauseMs: 1, run: runs };
      },
    };
  };

  it('runs after the startup delay, then skips scheduled runs while nothing changes', async () => {
    const c = counting();
    s = startScheduler({ ...defaultSchedulerConfig, startupDelayMs: 20, pauseThreshold: 0.5 }, c.collect, nopLogger);
    await sleep(200);
    expect(c.runs()).toBe(1);
    // Interval is 5 ms now (5/0.5 − 5): many ticks, all skipped.
    await sleep(100);
    expect(c.runs()).toBe(1);
    // A deletion makes the next scheduled run execute (deletion_threshold 0).
    s.mutated(true);
    await sleep(150);
    expect(c.runs()).toBe(2);
    // Mutations below the threshold do not.
    for (let i = 0; i < 99; i++) s.mutated(false);
    await sleep(150);
    expect(c.runs()).toBe(2);
    s.mutated(false);
    await sleep(150);
    expect(c.runs()).toBe(3);
  });

  it('answers a waiter with a run that started after it asked; a failed run rejects with gc failed', async () => {
    let failing = false;
    const c = counting(() => failing);
    s = startScheduler({ ...defaultSchedulerConfig, startupDelayMs: 0 }, c.collect, nopLogger);
    const first = await s.scheduleAndWait();
    expect(first.run).toBe(1);
    const [a, b] = await Promise.all([s.scheduleAndWait(), s.scheduleAndWait()]);
    expect(a.run).toBe(2);
    expect(b.run).toBe(2);
    failing = true;
    await expect(s.scheduleAndWait()).rejects.toThrow('gc failed');
  });

  it('with automatic off, runs only the collections asked for', async () => {
    const c = counting();
    s = startScheduler(
      { ...defaultSchedulerConfig, startupDelayMs: 10, idleIntervalMs: 50, automatic: false },
      c.collect,
      nopLogger,
    );
    s.mutated(true);
    await sleep(200);
    expect(c.runs()).toBe(0);
    await s.scheduleAndWait();
    expect(c.runs()).toBe(1);
    expect(c.idle).toEqual([false]);
  });

  it('collects an idle daemon at least every idle interval (containerd #6294)', async () => {
    const c = counting();
    s = startScheduler({ ...defaultSchedulerConfig, startupDelayMs: 10, idleIntervalMs: 100 }, c.collect, nopLogger);
    await sleep(380);
    expect(c.runs()).toBeGreaterThanOrEqual(3);
    expect(c.runs()).toBeLessThanOrEqual(5);
    // The startup run is a real one; the idle trigger's runs say so, and may remove only what an expiry freed.
    expect(c.idle[0]).toBe(false);
    expect(c.idle.slice(1).every((idle) => idle)).toBe(true);
    // A deletion makes the next scheduled run (here at most the idle interval away) a real one.
    const before = c.idle.length;
    s.mutated(true);
    await sleep(150);
    expect(c.idle.length).toBeGreaterThan(before);
    expect(c.idle[before]).toBe(false);
  });
});
