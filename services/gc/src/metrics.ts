import { Counter, Histogram, type Registry } from 'prom-client';
import type { Phase } from './collector.js';

const buckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * containerd's gc metrics (plugins/gc/metrics.go, as go-metrics names them) plus one histogram per phase.
 * Created unregistered; `register` adds them to the process's `/metrics` registry.
 */
export function createGcMetrics() {
  const collections = new Counter({
    name: 'containerd_gc_collections_total',
    help: 'Garbage collections run, by outcome',
    labelNames: ['status'] as const,
    registers: [],
  });
  const seconds = new Histogram({
    name: 'containerd_gc_gc_seconds',
    help: 'Time writers were held out by a garbage collection (lock, mark, record sweep)',
    buckets,
    registers: [],
  });
  const phases: Record<Phase, Histogram> = {
    mark: new Histogram({
      name: 'berth_gc_mark_seconds',
      help: 'Reading references and marking',
      buckets,
      registers: [],
    }),
    sweep: new Histogram({
      name: 'berth_gc_sweep_seconds',
      help: 'Removing unmarked records (metadata, content, snapshots) and committing',
      buckets,
      registers: [],
    }),
    content: new Histogram({
      name: 'berth_gc_content_seconds',
      help: 'Deleting unreferenced blobs from the content backend',
      buckets,
      registers: [],
    }),
    snapshots: new Histogram({
      name: 'berth_gc_snapshots_seconds',
      help: 'Nodes freeing the directories of removed snapshots',
      buckets,
      registers: [],
    }),
  };
  return {
    succeeded(pauseMs: number): void {
      collections.inc({ status: 'success' });
      seconds.observe(pauseMs / 1000);
    },
    failed(): void {
      collections.inc({ status: 'fail' });
    },
    phase(p: Phase, ms: number): void {
      phases[p].observe(ms / 1000);
    },
    register(registry: Registry): void {
      for (const m of [collections, seconds, ...Object.values(phases)]) registry.registerMetric(m);
    },
  };
}
