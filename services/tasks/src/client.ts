/**
 * @berth/tasks/client: how a client drives a node's tasks after they were created (containerd's Tasks API,
 * what `ctr task ls / kill / rm` ask): a task's state, signals, its exit. A gRPC proxy only: nothing in
 * berthd calls the agent in process, and creating a task (rootfs mounts, stdio fifos, an OCI spec) stays
 * with containerd's clients, which speak the Tasks API through the node's socket.
 */
import type { CallContext } from '@berth/common/context';
import { dial, invoke } from '@berth/common/grpc-client';
import {
  type DeleteResponse,
  type GetResponse,
  TasksClient as TasksGrpcClient,
  type WaitResponse,
} from '@berth/proto/containerd/services/tasks/v1/tasks';
import { Status as ProtoStatus } from '@berth/proto/containerd/types/task/task';
import type { Status } from './tasks/types.js';

export type { CallContext } from '@berth/common/context';

/** A task's (or an exec process's) state as Tasks.Get reports it. */
export interface TaskState {
  readonly id: string;
  readonly pid: number;
  /** `unknown` for a status this client does not know. */
  readonly status: Status | 'unknown';
  /** Meaningful once `status` is `stopped`. */
  readonly exitStatus: number;
  readonly exitedAt: Date | undefined;
}

/** How a process ended. */
export interface TaskExit {
  readonly exitStatus: number;
  readonly exitedAt: Date | undefined;
}

/**
 * The Tasks calls of a client; `execId` '' (the default) is the task's init process. Each rejects as the RPC
 * does (a ServiceError with containerd's errdefs code: not_found for an unknown task).
 */
export interface TasksClient {
  /** Tasks.Get. */
  get(ctx: CallContext, containerId: string, execId?: string): Promise<TaskState>;
  /** Tasks.Kill: sends `signal`; `all` signals every process of the task. */
  kill(ctx: CallContext, containerId: string, signal: number, opts?: { execId?: string; all?: boolean }): Promise<void>;
  /** Tasks.Wait: resolves when the process has exited (at once when it already has). */
  wait(ctx: CallContext, containerId: string, execId?: string): Promise<TaskExit>;
  /** Tasks.Delete of a stopped task: its init process's exit. */
  delete(ctx: CallContext, containerId: string): Promise<TaskExit & { readonly pid: number }>;
  close(): void;
}

/** `containerd.services.tasks.v1.Tasks` at `address` (a node's socket; mTLS over TCP when configured). */
export function remoteTasks(address: string): TasksClient {
  return tasksOver(dial(TasksGrpcClient, address));
}

/** A TasksClient over an existing gRPC client (one sharing a node connection); `close` closes it. */
export function tasksOver(client: TasksGrpcClient): TasksClient {
  return {
    async get(ctx, containerId, execId = '') {
      const res = await invoke<GetResponse>((md, o, cb) => client.get({ containerId, execId }, md, o, cb), ctx);
      const p = res.process;
      return {
        id: p?.id ?? '',
        pid: p?.pid ?? 0,
        status: (p && statuses[p.status]) ?? 'unknown',
        exitStatus: p?.exitStatus ?? 0,
        exitedAt: p?.exitedAt,
      };
    },
    async kill(ctx, containerId, signal, opts = {}) {
      const req = { containerId, execId: opts.execId ?? '', signal, all: opts.all ?? false };
      await invoke((md, o, cb) => client.kill(req, md, o, cb), ctx);
    },
    async wait(ctx, containerId, execId = '') {
      const res = await invoke<WaitResponse>((md, o, cb) => client.wait({ containerId, execId }, md, o, cb), ctx);
      return { exitStatus: res.exitStatus, exitedAt: res.exitedAt };
    },
    async delete(ctx, containerId) {
      const res = await invoke<DeleteResponse>((md, o, cb) => client.delete({ containerId }, md, o, cb), ctx);
      return { pid: res.pid, exitStatus: res.exitStatus, exitedAt: res.exitedAt };
    },
    close: () => client.close(),
  };
}

const statuses: Partial<Record<ProtoStatus, Status>> = {
  [ProtoStatus.CREATED]: 'created',
  [ProtoStatus.RUNNING]: 'running',
  [ProtoStatus.STOPPED]: 'stopped',
  [ProtoStatus.PAUSED]: 'paused',
};
