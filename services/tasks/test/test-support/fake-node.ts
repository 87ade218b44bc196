import { notFound } from '@berth/common/errors';
import { nopLogger } from '@berth/common/log';
import type { ContainerRecord, ContainerRecords } from '@berth/metadata/client';
import type { TaskEvents } from '../../src/events.js';
import type { Runc, RuncState } from '../../src/runc/runc.js';
import type { ShimConnection, SparePool } from '../../src/shim/client.js';
import type { ExitNotice, Request, StateResult } from '../../src/shim/protocol.js';
import type { NodeSystem, TaskServiceOptions } from '../../src/tasks/service.js';
import type { Exit } from '../../src/tasks/types.js';

/**
 * Fakes of what the task agent drives on a node (runc, the supervisor, mounts, cgroups), for unit tests of
 * the task lifecycle and recovery without runc or root. Every call is recorded.
 */

/** A supervisor connection: answers as the supervisor does, or as `fail` says; the test reports exits. */
export class FakeShim implements ShimConnection {
  readonly calls: Request[] = [];
  /** method → error the call rejects with. */
  readonly fail = new Map<Request['method'], Error>();
  state: StateResult = { id: '', processes: [] };
  closed = false;
  #exit: Array<(n: ExitNotice) => void> = [];
  #close: Array<() => void> = [];

  constructor(private readonly pids: () => number) {}

  async call<T>(req: Request): Promise<T> {
    this.calls.push(req);
    const failure = this.fail.get(req.method);
    if (failure) throw failure;
    if (req.method === 'create' || req.method === 'start') return { pid: this.pids() } as T;
    if (req.method === 'state') return this.state as T;
    return {} as T;
  }
  methods(): string[] {
    return this.calls.map((c) => c.method);
  }
  onExit(fn: (n: ExitNotice) => void): void {
    this.#exit.push(fn);
  }
  onClose(fn: () => void): void {
    this.#close.push(fn);
  }
  close(): void {
    this.closed = true;
  }
  /** The supervisor reports a process's exit. */
  exit(execId: string, exit: Exit): void {
    for (const fn of this.#exit) fn({ event: 'exit', execId, exit });
  }
  /** The supervisor dies: its connection drops. */
  drop(): void {
    for (const fn of this.#close) fn();
  }
}

export class FakeNode {
  readonly runcCalls: string[] = [];
  readonly runcStates = new Map<string, RuncState>();
  readonly mounts: string[] = [];
  readonly unmounts: string[] = [];
  /** Every connection the spare pool handed out, in order. */
  readonly spares: FakeShim[] = [];
  /** Supervisors still running for a socket path (recovery connects to them). */
  readonly supervisors = new Map<string, FakeShim>();
  poolCalls: string[] = [];
  /** Cgroup kill counter (undefined: the task has no cgroup). */
  oomKills: number | undefined;
  /** How often the agent read a container's cgroup directories (runc's state.json on a real node). */
  cgroupReads = 0;
  /** When set, mounting a rootfs fails with it. */
  mountFailure: Error | undefined;
  #pid = 1000;

  readonly system: NodeSystem = {
    createRunc: (_binary, root) => this.runc(root),
    createSparePool: () => this.pool(),
    connectShim: async (path) => {
      const s = this.supervisors.get(path);
      if (!s) throw Object.assign(new Error(`connect ENOENT ${path}`), { code: 'ENOENT' });
      return s;
    },
    mountAll: async (_mounts, target) => {
      if (this.mountFailure) throw this.mountFailure;
      this.mounts.push(target);
    },
    unmountAll: async (target) => {
      this.unmounts.push(target);
    },
    cgroupPaths: async () => {
      this.cgroupReads++;
      return this.oomKills === undefined ? undefined : { memory: '/nonexistent/berth-fake-cgroup' };
    },
    oomKills: async () => this.oomKills ?? 0,
    readStats: async () => ({ version: 2, metrics: {} as never }),
  };

  newShim(): FakeShim {
    return new FakeShim(() => this.#pid++);
  }

  private runc(root: string): Runc {
    const record = async (call: string): Promise<void> => {
      this.runcCalls.push(`${call} (${root})`);
    };
    return {
      kill: (id, signal, all) => record(`kill ${id} ${signal}${all ? ' all' : ''}`),
      pause: (id) => record(`pause ${id}`),
      resume: (id) => record(`resume ${id}`),
      ps: async (id) => {
        await record(`ps ${id}`);
        return [];
      },
      update: (id) => record(`update ${id}`),
      delete: (id, force) => record(`delete ${id}${force ? ' force' : ''}`),
      state: async (id) => {
        await record(`state ${id}`);
        return this.runcStates.get(id);
      },
    };
  }

  private pool(): SparePool {
    return {
      take: async () => {
        this.poolCalls.push('take');
        const s = this.newShim();
        this.spares.push(s);
        return s;
      },
      warm: () => void this.poolCalls.push('warm'),
      replenish: () => void this.poolCalls.push('replenish'),
      close: async () => void this.poolCalls.push('close'),
    };
  }
}

export interface RecordedEvent {
  readonly topic: keyof TaskEvents;
  readonly ns: string;
  readonly event: unknown;
  readonly id?: string;
}

/** Task events, recorded in order; `exit` resolves at once, as a bus that accepted it. */
export function recordingEvents(): TaskEvents & { readonly seen: RecordedEvent[]; topics(): string[] } {
  const seen: RecordedEvent[] = [];
  const on =
    (topic: keyof TaskEvents) =>
    (ns: string, event: unknown): void =>
      void seen.push({ topic, ns, event });
  return {
    seen,
    topics: () => seen.map((e) => e.topic),
    create: on('create'),
    start: on('start'),
    exit: async (ns, event, id) => void seen.push({ topic: 'exit', ns, event, id }),
    delete: on('delete'),
    oom: on('oom'),
    execAdded: on('execAdded'),
    execStarted: on('execStarted'),
    paused: on('paused'),
    resumed: on('resumed'),
    flush: async () => undefined,
    close: () => undefined,
  };
}

/** Container records as metadata would return them: an unknown id is metadata's not_found. */
export function fakeContainers(records: Record<string, Partial<ContainerRecord>>): ContainerRecords {
  return {
    async get(_ctx, id) {
      const r = records[id];
      if (!r) throw notFound(`container "${id}"`);
      return { id, runtime: 'io.containerd.runc.v2', spec: undefined, specTypeUrl: '', ...r };
    },
    close: () => undefined,
  };
}

/** An OCI spec a task can be created from. */
export function runnableSpec(extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ process: { args: ['/bin/true'] }, root: { path: 'rootfs' }, ...extra }));
}

export function serviceOptions(
  state: string,
  node: FakeNode,
  events: TaskEvents,
  containers: ContainerRecords,
): TaskServiceOptions {
  return { state, containers, events, log: nopLogger, system: node.system };
}
