import type { Mount } from '@berth/common/mount';
import type { Exit, Stdio } from '../shim/protocol.js';

export type { Mount } from '@berth/common/mount';
export type { Exit, Stdio } from '../shim/protocol.js';

/** containerd's task/process statuses (`containerd.v1.types.Status`). */
export type Status = 'created' | 'running' | 'stopped' | 'paused';

/** A process as Get/List report it; the init process's id is the container id. */
export interface ProcessView {
  readonly containerId: string;
  readonly id: string;
  readonly pid: number;
  readonly status: Status;
  readonly io: Stdio;
  readonly exit: Exit | undefined;
}

export interface CreateRequest {
  readonly containerId: string;
  readonly rootfs: readonly Mount[];
  readonly io: Stdio;
  /** Set when the client asked to restore from a checkpoint (unsupported). */
  readonly checkpoint: boolean;
}

export interface ExecRequest {
  readonly containerId: string;
  readonly execId: string;
  readonly io: Stdio;
  /** The OCI Process as JSON bytes. */
  readonly spec: Buffer;
}

export interface ProcessInfo {
  readonly pid: number;
  /** The exec id when the pid is an exec process's. */
  readonly execId: string | undefined;
}

export interface TaskMetric {
  readonly id: string;
  readonly namespace: string;
  readonly timestamp: Date;
  readonly stats: import('../cgroups/stats.js').CgroupStats;
}
