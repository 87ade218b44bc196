// Preloaded into berthd by `tasks-profile` (node --import): the event loop's delay, sampled every 1 ms.
// SIGUSR2 writes the percentiles since the previous SIGUSR2 (or the start) to BERTH_ELD_FILE as a JSON line, then resets.
import { appendFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const h = monitorEventLoopDelay({ resolution: 1 });
h.enable();
process.on('SIGUSR2', () => {
  const ms = (ns) => Math.round(ns / 1e4) / 100;
  const line = {
    n: h.count,
    mean: ms(h.mean),
    p50: ms(h.percentile(50)),
    p90: ms(h.percentile(90)),
    p99: ms(h.percentile(99)),
    max: ms(h.max),
  };
  if (process.env.BERTH_ELD_FILE) appendFileSync(process.env.BERTH_ELD_FILE, `${JSON.stringify(line)}\n`);
  h.reset();
});
