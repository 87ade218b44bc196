import { Metrics as V1Metrics } from '@berth/proto/containerd/cgroups/v1/metrics';
import { Metrics as V2Metrics } from '@berth/proto/containerd/cgroups/v2/metrics';
import { ProcessDetails } from '@berth/proto/containerd/runc/v1/options';
import type { Metric } from '@berth/proto/containerd/types/metrics';
import { type Process, type ProcessInfo as ProcessInfoPb, Status } from '@berth/proto/containerd/types/task/task';
import { zeroTime } from '../tasks/task-registry.js';
import type { Status as DomainStatus, ProcessInfo, ProcessView, TaskMetric } from '../tasks/types.js';

const statusPb: Record<DomainStatus, Status> = {
  created: Status.CREATED,
  running: Status.RUNNING,
  stopped: Status.STOPPED,
  paused: Status.PAUSED,
};

/** As containerd's `getProcessState`: `id` is set, `container_id` is not; an unexited process has Go's zero time. */
export function processToPb(p: ProcessView): Process {
  return {
    containerId: '',
    id: p.id,
    pid: p.pid,
    status: statusPb[p.status],
    stdin: p.io.stdin,
    stdout: p.io.stdout,
    stderr: p.io.stderr,
    terminal: p.io.terminal,
    exitStatus: p.exit?.exitStatus ?? 0,
    exitedAt: p.exit ? new Date(p.exit.exitedAt) : zeroTime,
  };
}

export function processInfoToPb(p: ProcessInfo): ProcessInfoPb {
  return {
    pid: p.pid,
    info:
      p.execId === undefined
        ? undefined
        : {
            typeUrl: 'containerd.runc.v1.ProcessDetails',
            value: Buffer.from(ProcessDetails.encode({ execId: p.execId }).finish()),
          },
  };
}

export function metricToPb(m: TaskMetric): Metric {
  const data =
    m.stats.version === 1
      ? { typeUrl: 'io.containerd.cgroups.v1.Metrics', value: Buffer.from(V1Metrics.encode(m.stats.metrics).finish()) }
      : { typeUrl: 'io.containerd.cgroups.v2.Metrics', value: Buffer.from(V2Metrics.encode(m.stats.metrics).finish()) };
  return { timestamp: m.timestamp, id: m.id, data };
}
