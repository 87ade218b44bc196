import { Gauge, type Registry } from 'prom-client';
import type { TaskMetric } from '../tasks/types.js';

/**
 * Per-container cgroup metrics on the ops server's `/metrics`, named after containerd's cgroups exporter
 * (`container_*`, labelled by container id and namespace). Read from the cgroup files at scrape time.
 */
export function registerTaskMetrics(registry: Registry, source: () => Promise<TaskMetric[]>): void {
  const labelNames = ['container_id', 'namespace'] as const;
  let scrape: Promise<TaskMetric[]> | undefined;
  // One read of every task per scrape, shared by the gauges' collect hooks.
  const current = (): Promise<TaskMetric[]> => {
    scrape ??= source().finally(() => setImmediate(() => (scrape = undefined)));
    return scrape;
  };
  const gauge = (name: string, help: string, value: (m: TaskMetric) => number | undefined): void => {
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        this.reset();
        for (const m of await current()) {
          const v = value(m);
          if (v !== undefined) this.set({ container_id: m.id, namespace: m.namespace }, v);
        }
      },
    });
  };
  const v1 = (m: TaskMetric) => (m.stats.version === 1 ? m.stats.metrics : undefined);
  const v2 = (m: TaskMetric) => (m.stats.version === 2 ? m.stats.metrics : undefined);
  gauge(
    'container_cpu_total_nanoseconds',
    'Total CPU time used by the container, in nanoseconds',
    (m) => v1(m)?.cpu?.usage?.total ?? (v2(m) ? (v2(m)?.cpu?.usageUsec ?? 0) * 1000 : undefined),
  );
  gauge(
    'container_cpu_user_nanoseconds',
    'User CPU time used by the container, in nanoseconds',
    (m) => v1(m)?.cpu?.usage?.user ?? (v2(m) ? (v2(m)?.cpu?.userUsec ?? 0) * 1000 : undefined),
  );
  gauge(
    'container_cpu_kernel_nanoseconds',
    'Kernel CPU time used by the container, in nanoseconds',
    (m) => v1(m)?.cpu?.usage?.kernel ?? (v2(m) ? (v2(m)?.cpu?.systemUsec ?? 0) * 1000 : undefined),
  );
  gauge(
    'container_memory_usage_bytes',
    'Memory the container uses, in bytes',
    (m) => v1(m)?.memory?.usage?.usage ?? v2(m)?.memory?.usage,
  );
  gauge(
    'container_memory_rss_bytes',
    'Anonymous memory (rss) of the container, in bytes',
    (m) => v1(m)?.memory?.totalRss ?? v2(m)?.memory?.anon,
  );
  gauge(
    'container_memory_cache_bytes',
    'Page cache charged to the container, in bytes',
    (m) => v1(m)?.memory?.totalCache ?? v2(m)?.memory?.file,
  );
  gauge('container_pids_current', 'Processes in the container', (m) => v1(m)?.pids?.current ?? v2(m)?.pids?.current);
  gauge('container_blkio_read_bytes', 'Bytes the container read from block devices', (m) => {
    const s = v1(m);
    if (s)
      return (s.blkio?.ioServiceBytesRecursive ?? []).filter((e) => e.op === 'Read').reduce((a, e) => a + e.value, 0);
    return v2(m)?.io?.usage.reduce((a, e) => a + e.rbytes, 0);
  });
  gauge('container_blkio_write_bytes', 'Bytes the container wrote to block devices', (m) => {
    const s = v1(m);
    if (s)
      return (s.blkio?.ioServiceBytesRecursive ?? []).filter((e) => e.op === 'Write').reduce((a, e) => a + e.value, 0);
    return v2(m)?.io?.usage.reduce((a, e) => a + e.wbytes, 0);
  });
}
