import { join } from 'node:path';
import { type RequestContext, requireNamespace } from '@berth/common/context';
import { ErrorCode, invalidArgument, ServiceError } from '@berth/common/errors';
import type { Logger } from '@berth/common/log';
import { mountAll, unmountAll } from '@berth/common/mount';
import type { ContainerRecords } from '@berth/metadata/client';
import { cgroupPaths, oomKills, readStats } from '../cgroups/stats.js';
import type { TaskEvents } from '../events.js';
import { createRunc, type Runc } from '../runc/runc.js';
import {
  type ConnectOptions,
  connectShim,
  createSparePool,
  type ShimConnection,
  type SparePool,
} from '../shim/client.js';
import { type Task, TaskRegistry } from './task-registry.js';

/**
 * What the agent does to the node, in one place: runc, the task supervisor, rootfs mounts and cgroups.
 * The service runs on the real ones; its unit tests put fakes here (no runc, no root).
 */
export interface NodeSystem {
  createRunc(binary: string, root: string): Runc;
  createSparePool(tasksRoot: string, opts?: ConnectOptions): SparePool;
  connectShim(socketPath: string, opts?: ConnectOptions): Promise<ShimConnection>;
  mountAll: typeof mountAll;
  unmountAll: typeof unmountAll;
  cgroupPaths: typeof cgroupPaths;
  oomKills: typeof oomKills;
  readStats: typeof readStats;
}

export const nodeSystem: NodeSystem = {
  createRunc,
  createSparePool,
  connectShim,
  mountAll,
  unmountAll,
  cgroupPaths,
  oomKills,
  readStats,
};

export interface TaskServiceOptions {
  /** The node's runtime state dir: tasks under <state>/tasks/<ns>/<id>, runc state under <state>/runc/<ns>. */
  readonly state: string;
  readonly runc?: string;
  readonly containers: ContainerRecords;
  readonly events: TaskEvents;
  readonly log: Logger;
  /** Default: the real runc, supervisor, mounts and cgroups. */
  readonly system?: NodeSystem;
  /** How long a supervisor call may go unanswered (`stall-timeout-ms`); unset: the default. */
  readonly supervisorTimeoutMs?: number;
}

/** The state every part of the task service shares: the registry, the node's paths, runc and the supervisor pool. */
export interface TaskAgent {
  readonly tasksRoot: string;
  readonly runcBinary: string;
  readonly containers: ContainerRecords;
  readonly events: TaskEvents;
  readonly log: Logger;
  readonly system: NodeSystem;
  readonly registry: TaskRegistry;
  /** Set by close(): from then on a supervisor connection that closes was closed by us. */
  closing: boolean;
  runcRoot(ns: string): string;
  runcFor(ns: string): Runc;
  sparePool(): SparePool;
  /** The pool if it was ever opened (close() closes it). */
  openedSparePool(): SparePool | undefined;
  /** How the agent connects to supervisors (the per-call timeout). */
  readonly shimOptions: ConnectOptions;
}

export function createTaskAgent(opts: TaskServiceOptions): TaskAgent {
  const system = opts.system ?? nodeSystem;
  const tasksRoot = join(opts.state, 'tasks');
  const runcBinary = opts.runc ?? 'runc';
  const runcs = new Map<string, Runc>();
  let spares: SparePool | undefined;
  const runcRoot = (ns: string): string => join(opts.state, 'runc', ns);
  const shimOptions: ConnectOptions =
    opts.supervisorTimeoutMs !== undefined ? { callTimeoutMs: opts.supervisorTimeoutMs } : {};
  return {
    tasksRoot,
    runcBinary,
    containers: opts.containers,
    events: opts.events,
    log: opts.log,
    system,
    registry: new TaskRegistry(),
    closing: false,
    runcRoot,
    runcFor(ns) {
      let r = runcs.get(ns);
      if (!r) {
        r = system.createRunc(runcBinary, runcRoot(ns));
        runcs.set(ns, r);
      }
      return r;
    },
    sparePool: () => (spares ??= system.createSparePool(tasksRoot, shimOptions)),
    openedSparePool: () => spares,
    shimOptions,
  };
}

/** The task, or containerd's errors: the container's not_found when it has no record, else `task x not found`. */
export async function getTask(agent: TaskAgent, ctx: RequestContext, id: string): Promise<Task> {
  const ns = requireNamespace(ctx);
  const t = agent.registry.get(ns, id);
  if (t && !t.deleting) return t;
  if (id === '') throw invalidArgument('container id must not be empty');
  await agent.containers.get(ctx, id);
  throw new ServiceError(ErrorCode.NotFound, `task ${id} not found`);
}
