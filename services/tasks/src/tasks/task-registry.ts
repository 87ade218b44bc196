import { ErrorCode, notFound, ServiceError } from '@berth/common/errors';
import type { ShimConnection } from '../shim/client.js';
import type { Exit, ProcessView, Status, Stdio } from './types.js';

/** Go's zero time, which containerd reports for a process that has not exited. */
export const zeroTime = new Date(-62135596800000);

export interface Proc {
  readonly execId: string;
  pid: number;
  status: 'created' | 'running' | 'stopped';
  readonly io: Stdio;
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
  resolveExit(e: Exit): void;
}

export interface Task {
  readonly namespace: string;
  readonly id: string;
  readonly dir: string;
  readonly runtime: string;
  readonly rootfsMounted: boolean;
  shim: ShimConnection | undefined;
  paused: boolean;
  readonly procs: Map<string, Proc>;
  /** Set while Delete runs, so concurrent calls see the task going. */
  deleting: boolean;
  /** The cgroup's OOM kill count last seen, to announce each new one. */
  oomKills: number;
  /**
   * The container's cgroup directories once read from runc's state (`taskCgroups`): fixed for the container's
   * life, and runc's state.json, which holds them, is ~10 KiB of JSON to parse again on every OOM poll.
   */
  cgroups?: Readonly<Record<string, string>>;
  /** The init exit's announcement (OOM check, then /tasks/exit), which Delete waits for. */
  announcing?: Promise<void>;
}

/** What the agent keeps on disk per task (task.json), to find it again after a restart. */
export interface TaskRecord {
  readonly namespace: string;
  readonly id: string;
  readonly runtime: string;
  readonly rootfsMounted: boolean;
  readonly io: Stdio;
}

export function newProc(execId: string, io: Stdio, pid = 0): Proc {
  let resolveExit: (e: Exit) => void = () => undefined;
  const exited = new Promise<Exit>((r) => (resolveExit = r));
  return { execId, pid, status: 'created', io, exit: undefined, exited, resolveExit };
}

/** A task with no processes yet: the state Create and recovery both start from. */
export function newTask(record: Omit<TaskRecord, 'io'> & { readonly dir: string }): Task {
  return {
    namespace: record.namespace,
    id: record.id,
    dir: record.dir,
    runtime: record.runtime,
    rootfsMounted: record.rootfsMounted,
    shim: undefined,
    paused: false,
    procs: new Map(),
    deleting: false,
    oomKills: 0,
  };
}

export function getProc(t: Task, execId: string): Proc {
  const p = t.procs.get(execId);
  if (!p) throw notFound(`process ${execId}`);
  return p;
}

export function statusOf(t: Task, p: Proc): Status {
  if (p.status === 'stopped') return 'stopped';
  if (p.execId === '' && t.paused) return 'paused';
  return p.status;
}

export function view(t: Task, p: Proc): ProcessView {
  return {
    containerId: t.id,
    id: p.execId === '' ? t.id : p.execId,
    pid: p.pid,
    status: statusOf(t, p),
    io: p.io,
    exit: p.exit,
  };
}

export function shimOf(t: Task): ShimConnection {
  if (!t.shim) throw new ServiceError(ErrorCode.Unavailable, `task ${t.id}: supervisor is not running`);
  return t.shim;
}

/** The node's tasks by namespace and id, and the ids whose Create is under way. */
export class TaskRegistry {
  readonly #tasks = new Map<string, Task>();
  readonly #creating = new Set<string>();

  get(ns: string, id: string): Task | undefined {
    return this.#tasks.get(key(ns, id));
  }

  /** Whether the id is a task or being created as one. */
  taken(ns: string, id: string): boolean {
    const k = key(ns, id);
    return this.#tasks.has(k) || this.#creating.has(k);
  }

  reserve(ns: string, id: string): void {
    this.#creating.add(key(ns, id));
  }

  release(ns: string, id: string): void {
    this.#creating.delete(key(ns, id));
  }

  add(t: Task): void {
    this.#tasks.set(key(t.namespace, t.id), t);
  }

  remove(t: Task): void {
    this.#tasks.delete(key(t.namespace, t.id));
  }

  all(): IterableIterator<Task> {
    return this.#tasks.values();
  }
}

const key = (ns: string, id: string): string => `${ns}/${id}`;
