import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RequestContext, requireNamespace } from '@berth/common/context';
import {
  alreadyExists,
  ErrorCode,
  failedPrecondition,
  invalidArgument,
  notFound,
  notImplemented,
  ServiceError,
  wrap,
} from '@berth/common/errors';
import { adaptorFromObject, FilterSyntaxError, parseFilters } from '@berth/common/filters';
import { validateIdentifier } from '@berth/common/identifiers';
import type { Logger } from '@berth/common/log';
import { mountAll, unmountAll } from '@berth/common/mount';
// TODO(r-clients): the alias goes once the split of this file lands (#15): the type is ContainerRecords.
import type { ContainerRecords as ContainersPeer } from '@berth/metadata/client';
import { cgroupPaths, oomKills, readStats } from '../cgroups/stats.js';
import type { TaskEvents } from '../events.js';
import { createRunc, isProcessGone, type Runc } from '../runc/runc.js';
import { connectShim, createSparePool, type ShimConnection, type SparePool } from '../shim/client.js';
import { type ExitNotice, exitFile, type StateResult, socketName } from '../shim/protocol.js';
import type { CreateRequest, ExecRequest, Exit, ProcessInfo, ProcessView, Status, Stdio, TaskMetric } from './types.js';

/** Go's zero time, which containerd reports for a process that has not exited. */
const zeroTime = new Date(-62135596800000);

export { zeroTime };

/** Runtimes this agent runs (all with runc); containerd's names for them. */
const runcRuntimes = new Set(['io.containerd.runc.v2', 'io.containerd.runc.v1', 'io.containerd.runtime.v1.linux']);

export interface TaskServiceOptions {
  /** The node's runtime state dir: tasks under <state>/tasks/<ns>/<id>, runc state under <state>/runc/<ns>. */
  readonly state: string;
  readonly runc?: string;
  readonly containers: ContainersPeer;
  readonly events: TaskEvents;
  readonly log: Logger;
}

interface Proc {
  readonly execId: string;
  pid: number;
  status: 'created' | 'running' | 'stopped';
  readonly io: Stdio;
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
  resolveExit(e: Exit): void;
}

interface Task {
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
  /** The init exit's announcement (OOM check, then /tasks/exit), which Delete waits for. */
  announcing?: Promise<void>;
}

/** What the agent keeps on disk per task, to find it again after a restart. */
interface TaskRecord {
  readonly namespace: string;
  readonly id: string;
  readonly runtime: string;
  readonly rootfsMounted: boolean;
  readonly io: Stdio;
}

export interface TaskService {
  create(ctx: RequestContext, req: CreateRequest): Promise<{ pid: number }>;
  start(ctx: RequestContext, containerId: string, execId: string): Promise<{ pid: number }>;
  delete(ctx: RequestContext, containerId: string): Promise<Exit>;
  deleteProcess(ctx: RequestContext, containerId: string, execId: string): Promise<Exit & { id: string }>;
  get(ctx: RequestContext, containerId: string, execId: string): Promise<ProcessView>;
  list(ctx: RequestContext): Promise<ProcessView[]>;
  kill(ctx: RequestContext, containerId: string, execId: string, signal: number, all: boolean): Promise<void>;
  exec(ctx: RequestContext, req: ExecRequest): Promise<void>;
  resizePty(ctx: RequestContext, containerId: string, execId: string, width: number, height: number): Promise<void>;
  closeIO(ctx: RequestContext, containerId: string, execId: string): Promise<void>;
  pause(ctx: RequestContext, containerId: string): Promise<void>;
  resume(ctx: RequestContext, containerId: string): Promise<void>;
  listPids(ctx: RequestContext, containerId: string): Promise<ProcessInfo[]>;
  update(ctx: RequestContext, containerId: string, resources: Buffer): Promise<void>;
  metrics(ctx: RequestContext, filters: readonly string[]): Promise<TaskMetric[]>;
  wait(ctx: RequestContext, containerId: string, execId: string): Promise<Exit>;
  /** Metrics of every task on the node, for the Prometheus exporter. */
  allMetrics(): Promise<TaskMetric[]>;
  /** Finds the tasks left by a previous agent: re-adopts the running ones, reports the exits it missed. */
  recover(): Promise<void>;
  close(): Promise<void>;
}

function newProc(execId: string, io: Stdio, pid = 0): Proc {
  let resolveExit: (e: Exit) => void = () => undefined;
  const exited = new Promise<Exit>((r) => (resolveExit = r));
  return { execId, pid, status: 'created', io, exit: undefined, exited, resolveExit };
}

export function createTaskService(opts: TaskServiceOptions): TaskService {
  const tasksRoot = join(opts.state, 'tasks');
  const runcBinary = opts.runc ?? 'runc';
  const tasks = new Map<string, Task>();
  /** Set by close(): from then on a supervisor connection that closes was closed by us. */
  let closing = false;
  const creating = new Set<string>();
  const runcs = new Map<string, Runc>();
  let spares: SparePool | undefined;
  const key = (ns: string, id: string): string => `${ns}/${id}`;
  const runcRoot = (ns: string): string => join(opts.state, 'runc', ns);
  const runcFor = (ns: string): Runc => {
    let r = runcs.get(ns);
    if (!r) {
      r = createRunc(runcBinary, runcRoot(ns));
      runcs.set(ns, r);
    }
    return r;
  };
  const sparePool = (): SparePool => (spares ??= createSparePool(tasksRoot));

  /** The task, or containerd's errors: the container's not_found when it has no record, else `task x not found`. */
  const getTask = async (ctx: RequestContext, id: string): Promise<Task> => {
    const ns = requireNamespace(ctx);
    const t = tasks.get(key(ns, id));
    if (t && !t.deleting) return t;
    if (id === '') throw invalidArgument('container id must not be empty');
    await opts.containers.get(ctx, id);
    throw new ServiceError(ErrorCode.NotFound, `task ${id} not found`);
  };

  const getProc = (t: Task, execId: string): Proc => {
    const p = t.procs.get(execId);
    if (!p) throw notFound(`process ${execId}`);
    return p;
  };

  const statusOf = (t: Task, p: Proc): Status => {
    if (p.status === 'stopped') return 'stopped';
    if (p.execId === '' && t.paused) return 'paused';
    return p.status;
  };

  const view = (t: Task, p: Proc): ProcessView => ({
    containerId: t.id,
    id: p.execId === '' ? t.id : p.execId,
    pid: p.pid,
    status: statusOf(t, p),
    io: p.io,
    exit: p.exit,
  });

  /** Records an exit once and announces it once, even across agent restarts (marker file beside the status). */
  const onExit = (t: Task, execId: string, exit: Exit): void => {
    const p = t.procs.get(execId);
    if (!p || p.exit) return;
    p.exit = exit;
    p.status = 'stopped';
    if (execId === '') t.paused = false;
    p.resolveExit(exit);
    // An OOM kill ends the task at once: look at the counter before the exit is announced (containerd's
    // order) and before Delete removes the cgroup.
    const announcing = (execId === '' ? checkOomOf(t) : Promise.resolve()).then(() => announceExit(t, execId, exit));
    announcing.catch((e: unknown) => opts.log.warn('cannot announce exit', { id: t.id, execId, err: e }));
    if (execId === '') t.announcing = announcing;
  };

  const announceExit = async (t: Task, execId: string, exit: Exit): Promise<void> => {
    const marker = join(t.dir, `${exitFile(execId)}.published`);
    if (existsSync(marker)) return;
    const id = `tasks-exit-${t.namespace}-${t.id}-${execId || 'init'}-${exit.pid}-${Date.parse(exit.exitedAt)}`;
    await opts.events.exit(
      t.namespace,
      {
        containerId: t.id,
        id: execId === '' ? t.id : execId,
        pid: exit.pid,
        exitStatus: exit.exitStatus,
        exitedAt: new Date(exit.exitedAt),
      },
      id,
    );
    await writeFile(marker, id).catch((e: unknown) => opts.log.warn('cannot record exit as announced', { err: e }));
  };

  const attach = (t: Task, shim: ShimConnection): void => {
    t.shim = shim;
    shim.onExit((n: ExitNotice) => onExit(t, n.execId, n.exit));
    shim.onClose(() => {
      if (t.shim === shim) t.shim = undefined;
      // The agent closing its own connections (shutdown) is no lost supervisor: the task runs on without it.
      if (!t.deleting && !closing) void supervisorLost(t);
    });
  };

  /**
   * The supervisor is gone (killed): its exit files hold what it saw; a process it did not see exit can no
   * longer be waited for, so it is reported as killed (containerd reports a dead shim's task the same way).
   */
  const supervisorLost = async (t: Task): Promise<void> => {
    opts.log.warn('task supervisor lost', { namespace: t.namespace, id: t.id });
    for (const p of t.procs.values()) {
      if (p.exit) continue;
      const saved = await readExit(t.dir, p.execId);
      if (saved) {
        onExit(t, p.execId, saved);
        continue;
      }
      if (p.execId === '' && p.status !== 'created') {
        await runcFor(t.namespace)
          .kill(t.id, 9, true)
          .catch(() => undefined);
      }
      onExit(t, p.execId, { pid: p.pid, exitStatus: 128 + 9, exitedAt: new Date().toISOString() });
    }
  };

  const shimOf = (t: Task): ShimConnection => {
    if (!t.shim) throw new ServiceError(ErrorCode.Unavailable, `task ${t.id}: supervisor is not running`);
    return t.shim;
  };

  /**
   * Removes what a task leaves on the node: runc state, rootfs mounts, the bundle, the cgroup. With the
   * task's supervisor, runc delete runs there (forking it is far cheaper than forking the agent), and the
   * supervisor is shut down once runc's state is gone.
   */
  const cleanup = async (
    ns: string,
    id: string,
    dir: string,
    mounted: boolean,
    shim?: ShimConnection,
  ): Promise<void> => {
    const paths = await cgroupPaths(runcRoot(ns), id);
    const runcDelete = async (): Promise<void> => {
      if (shim) {
        try {
          await shim.call({ method: 'delete' });
          return;
        } catch (e) {
          if (!(e instanceof ServiceError && e.code === ErrorCode.Unavailable)) throw e;
          // The supervisor is gone: the agent runs runc itself.
        }
      }
      await runcFor(ns).delete(id, true);
    };
    await runcDelete().catch((e: unknown) => {
      if (!(e instanceof Error && /does not exist|not exist/.test(e.message))) {
        opts.log.warn('runc delete failed', { namespace: ns, id, err: e });
      }
    });
    if (shim) {
      await shim.call({ method: 'shutdown' }).catch(() => undefined);
      shim.close();
    }
    if (mounted) await unmountAll(join(dir, 'rootfs'));
    // runc removes the container's cgroup; an empty one it left (it never held a process) goes here.
    for (const p of Object.values(paths ?? {})) await rmdir(p).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  };

  const parseSpec = (raw: Buffer | undefined, ns: string, id: string): Record<string, unknown> => {
    if (!raw || raw.length === 0) throw invalidArgument(`container ${JSON.stringify(id)} has no runtime spec`);
    let spec: unknown;
    try {
      spec = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      throw invalidArgument(`runtime spec of container ${JSON.stringify(id)} is not JSON`, e);
    }
    if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
      throw invalidArgument(`runtime spec of container ${JSON.stringify(id)} is not an object`);
    }
    const s = spec as Record<string, unknown>;
    if (typeof s.process !== 'object' || s.process === null) throw invalidArgument('runtime spec has no process');
    const root = s.root as { path?: unknown } | undefined;
    if (typeof root !== 'object' || root === null || typeof root.path !== 'string' || root.path === '') {
      throw invalidArgument('runtime spec has no root.path');
    }
    if (s.linux === undefined) s.linux = {};
    const linux = s.linux as Record<string, unknown>;
    if (typeof linux !== 'object' || linux === null)
      throw invalidArgument('runtime spec linux section is not an object');
    if (typeof linux.cgroupsPath !== 'string' || linux.cgroupsPath === '') linux.cgroupsPath = `/berth/${ns}/${id}`;
    return s;
  };

  const service: TaskService = {
    async create(ctx, req) {
      const ns = requireNamespace(ctx);
      validateIdentifier(req.containerId);
      const k = key(ns, req.containerId);
      if (tasks.has(k) || creating.has(k)) throw alreadyExists(`task ${req.containerId}`);
      const container = await opts.containers.get(ctx, req.containerId);
      if (req.checkpoint) throw notImplemented('restoring a task from a checkpoint');
      if (!runcRoutes(container.runtime)) {
        throw notImplemented(
          `runtime ${JSON.stringify(container.runtime)} (this agent runs ${[...runcRuntimes].join(', ')})`,
        );
      }
      const spec = parseSpec(container.spec, ns, req.containerId);
      if (req.io.terminal) (spec.process as Record<string, unknown>).terminal = true;
      creating.add(k);
      const dir = join(tasksRoot, ns, req.containerId);
      let mounted = false;
      let shim: ShimConnection | undefined;
      let created: Task | undefined;
      // A client that went away (killed, deadline passed) gets no task: nothing would ever delete it. Checked
      // after every step; the rollback below removes what the steps so far made (runc container, mounts, dir).
      const stillWanted = (): void => {
        if (ctx.signal.aborted)
          throw new ServiceError(ErrorCode.Canceled, `create ${req.containerId}: context canceled`);
      };
      try {
        if (existsSync(dir)) {
          // Left by a task whose agent died mid-create or mid-delete: nothing runs there (it is not a task).
          await cleanup(ns, req.containerId, dir, true);
        }
        await mkdir(join(dir, 'rootfs'), { recursive: true, mode: 0o711 });
        await mkdir(runcRoot(ns), { recursive: true, mode: 0o711 });
        if (req.rootfs.length > 0) {
          await mountAll(req.rootfs, join(dir, 'rootfs')).catch((e: unknown) => {
            throw e instanceof ServiceError
              ? e
              : new ServiceError(ErrorCode.Unknown, `failed to mount rootfs component: ${(e as Error).message}`);
          });
          mounted = true;
        }
        stillWanted();
        await writeFile(join(dir, 'config.json'), JSON.stringify(spec));
        const record: TaskRecord = {
          namespace: ns,
          id: req.containerId,
          runtime: container.runtime,
          rootfsMounted: mounted,
          io: req.io,
        };
        await writeFile(join(dir, 'task.json'), JSON.stringify(record));
        shim = await sparePool().take();
        stillWanted();
        await shim.call({ method: 'init', dir, id: req.containerId, runcRoot: runcRoot(ns), runc: runcBinary });
        const t: Task = {
          namespace: ns,
          id: req.containerId,
          dir,
          runtime: container.runtime,
          rootfsMounted: mounted,
          shim: undefined,
          paused: false,
          procs: new Map([['', newProc('', req.io)]]),
          deleting: false,
          oomKills: 0,
        };
        created = t;
        attach(t, shim);
        let pid: number;
        try {
          ({ pid } = await shim.call<{ pid: number }>({ method: 'create', bundle: dir, io: req.io }));
        } catch (e) {
          throw runcCreateError(e);
        }
        stillWanted();
        const init = t.procs.get('');
        if (init) init.pid = pid;
        tasks.set(k, t);
        sparePool().replenish();
        opts.events.create(ns, {
          containerId: req.containerId,
          bundle: dir,
          rootfs: req.rootfs.map((m) => ({ type: m.type, source: m.source, target: '', options: [...m.options] })),
          io: { stdin: req.io.stdin, stdout: req.io.stdout, stderr: req.io.stderr, terminal: req.io.terminal },
          checkpoint: '',
          pid,
        });
        return { pid };
      } catch (e) {
        // Not a task that ran and lost its supervisor: nothing to announce, everything to remove.
        if (created) created.deleting = true;
        if (shim) {
          const s = shim;
          await s.call({ method: 'shutdown' }).catch(() => undefined);
          s.close();
        }
        await cleanup(ns, req.containerId, dir, mounted).catch((err: unknown) =>
          opts.log.warn('cleanup after failed create', { namespace: ns, id: req.containerId, err }),
        );
        throw e;
      } finally {
        creating.delete(k);
      }
    },

    async start(ctx, containerId, execId) {
      const t = await getTask(ctx, containerId);
      const p = getProc(t, execId);
      if (p.status === 'stopped') throw failedPrecondition(`cannot start a stopped process`);
      if (p.status === 'running') throw failedPrecondition(`cannot start a running process`);
      const { pid } = await shimOf(t)
        .call<{ pid: number }>({ method: 'start', execId })
        .catch((e: unknown) => {
          throw execId === '' ? wrap(e, 'OCI runtime start failed') : runcExecError(e);
        });
      p.pid = pid;
      if (p.status === 'created') p.status = 'running';
      if (execId === '') opts.events.start(t.namespace, { containerId: t.id, pid });
      else opts.events.execStarted(t.namespace, { containerId: t.id, execId, pid });
      return { pid };
    },

    async delete(ctx, containerId) {
      const t = await getTask(ctx, containerId);
      const init = getProc(t, '');
      const status = statusOf(t, init);
      if (status === 'running' || status === 'paused')
        throw failedPrecondition(`task ${containerId} must be stopped before deletion: ${status}`);
      t.deleting = true;
      try {
        if (init.status === 'created') {
          // Never started: runc delete --force kills the waiting init; its exit is the status we return.
          await runcFor(t.namespace)
            .delete(t.id, true)
            .catch(() => undefined);
          await Promise.race([init.exited, new Promise((r) => setTimeout(r, 2_000))]);
          if (!init.exit) onExit(t, '', { pid: init.pid, exitStatus: 128 + 9, exitedAt: new Date().toISOString() });
        }
        const exit = init.exit ?? { pid: init.pid, exitStatus: 0, exitedAt: new Date().toISOString() };
        // The exit is announced before the delete, as containerd orders them.
        await (t.announcing ?? announceExit(t, '', exit)).catch(() => undefined);
        await cleanup(t.namespace, t.id, t.dir, t.rootfsMounted, t.shim);
        tasks.delete(key(t.namespace, t.id));
        await removeEmptyParents(t.namespace);
        opts.events.delete(t.namespace, {
          containerId: t.id,
          pid: exit.pid,
          exitStatus: exit.exitStatus,
          exitedAt: new Date(exit.exitedAt),
          id: '',
        });
        return exit;
      } catch (e) {
        t.deleting = false;
        throw e;
      }
    },

    async deleteProcess(ctx, containerId, execId) {
      const t = await getTask(ctx, containerId);
      if (execId === '') return { ...(await service.delete(ctx, containerId)), id: containerId };
      const p = getProc(t, execId);
      if (p.status === 'running')
        throw failedPrecondition(`process ${execId} must be stopped before deletion: running`);
      await shimOf(t).call({ method: 'deleteExec', execId });
      t.procs.delete(execId);
      const exit = p.exit ?? { pid: p.pid, exitStatus: 0, exitedAt: zeroTime.toISOString() };
      return { ...exit, id: execId };
    },

    async get(ctx, containerId, execId) {
      const t = await getTask(ctx, containerId);
      return view(t, getProc(t, execId));
    },

    async list(ctx) {
      const ns = requireNamespace(ctx);
      const out: ProcessView[] = [];
      for (const t of tasks.values()) {
        if (t.namespace !== ns || t.deleting) continue;
        const init = t.procs.get('');
        if (init) out.push(view(t, init));
      }
      return out;
    },

    async kill(ctx, containerId, execId, signal, all) {
      const t = await getTask(ctx, containerId);
      const p = getProc(t, execId);
      if (p.status === 'stopped') throw notFound('process already finished');
      try {
        if (execId === '') await runcFor(t.namespace).kill(t.id, signal, all);
        else process.kill(p.pid, signal);
      } catch (e) {
        if (isProcessGone(e) || (e as { code?: string }).code === 'ESRCH') throw notFound('process already finished');
        throw wrap(e, 'OCI runtime kill failed');
      }
    },

    async exec(ctx, req) {
      const t = await getTask(ctx, req.containerId);
      validateIdentifier(req.execId);
      if (t.procs.has(req.execId)) throw alreadyExists(`id ${req.execId}`);
      const init = getProc(t, '');
      if (init.status === 'stopped') throw failedPrecondition(`container ${t.id} is not running`);
      let process: Record<string, unknown>;
      try {
        const parsed = JSON.parse(req.spec.toString('utf8')) as unknown;
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
        process = parsed as Record<string, unknown>;
      } catch (e) {
        throw invalidArgument('exec process spec is not a JSON OCI process', e);
      }
      if (!Array.isArray(process.args) || process.args.length === 0)
        throw invalidArgument('exec process spec has no args');
      if (req.io.terminal) process.terminal = true;
      const processFile = join(t.dir, `exec-${req.execId}.json`);
      await writeFile(processFile, JSON.stringify(process));
      t.procs.set(req.execId, newProc(req.execId, req.io));
      try {
        await shimOf(t).call({ method: 'exec', execId: req.execId, io: req.io, processFile });
      } catch (e) {
        t.procs.delete(req.execId);
        throw e;
      }
      opts.events.execAdded(t.namespace, { containerId: t.id, execId: req.execId });
    },

    async resizePty(ctx, containerId, execId, width, height) {
      const t = await getTask(ctx, containerId);
      getProc(t, execId);
      await shimOf(t).call({ method: 'resize', execId, width, height });
    },

    async closeIO(ctx, containerId, execId) {
      const t = await getTask(ctx, containerId);
      getProc(t, execId);
      await shimOf(t).call({ method: 'closeIO', execId });
    },

    async pause(ctx, containerId) {
      const t = await getTask(ctx, containerId);
      const init = getProc(t, '');
      if (init.status !== 'running') throw failedPrecondition(`task ${containerId} is not running`);
      await runcFor(t.namespace)
        .pause(t.id)
        .catch((e: unknown) => {
          throw wrap(e, 'OCI runtime pause failed');
        });
      t.paused = true;
      opts.events.paused(t.namespace, { containerId: t.id });
    },

    async resume(ctx, containerId) {
      const t = await getTask(ctx, containerId);
      if (!t.paused) throw failedPrecondition(`task ${containerId} is not paused`);
      await runcFor(t.namespace)
        .resume(t.id)
        .catch((e: unknown) => {
          throw wrap(e, 'OCI runtime resume failed');
        });
      t.paused = false;
      opts.events.resumed(t.namespace, { containerId: t.id });
    },

    async listPids(ctx, containerId) {
      const t = await getTask(ctx, containerId);
      const pids = await runcFor(t.namespace)
        .ps(t.id)
        .catch((e: unknown) => {
          throw wrap(e, 'OCI runtime ps failed');
        });
      const execByPid = new Map<number, string>();
      for (const p of t.procs.values()) if (p.execId !== '' && p.pid > 0) execByPid.set(p.pid, p.execId);
      return pids.map((pid) => ({ pid, execId: execByPid.get(pid) }));
    },

    async update(ctx, containerId, resources) {
      const t = await getTask(ctx, containerId);
      let parsed: unknown;
      try {
        parsed = JSON.parse(resources.toString('utf8'));
      } catch (e) {
        throw invalidArgument('resources are not JSON LinuxResources', e);
      }
      const file = join(t.dir, `resources-${randomBytes(4).toString('hex')}.json`);
      await writeFile(file, JSON.stringify(parsed));
      try {
        await runcFor(t.namespace).update(t.id, file);
      } catch (e) {
        throw wrap(e, 'OCI runtime update failed');
      } finally {
        await rm(file, { force: true });
      }
    },

    async metrics(_ctx, filters) {
      let filter: ReturnType<typeof parseFilters>;
      try {
        filter = parseFilters(filters);
      } catch (e) {
        if (e instanceof FilterSyntaxError) throw invalidArgument(e.message);
        throw e;
      }
      const out: TaskMetric[] = [];
      for (const t of tasks.values()) {
        if (t.deleting) continue;
        if (!filter.match(adaptorFromObject({ id: t.id, namespace: t.namespace, runtime: t.runtime }))) continue;
        const m = await metricOf(t);
        if (m) out.push(m);
      }
      return out;
    },

    async wait(ctx, containerId, execId) {
      const t = await getTask(ctx, containerId);
      const p = getProc(t, execId);
      if (p.exit) return p.exit;
      return new Promise<Exit>((resolve, reject) => {
        const abort = (): void => reject(new ServiceError(ErrorCode.Canceled, 'context canceled'));
        ctx.signal.addEventListener('abort', abort, { once: true });
        void p.exited.then((e) => {
          ctx.signal.removeEventListener('abort', abort);
          resolve(e);
        });
      });
    },

    async allMetrics() {
      const out: TaskMetric[] = [];
      for (const t of tasks.values()) {
        const m = t.deleting ? undefined : await metricOf(t);
        if (m) out.push(m);
      }
      return out;
    },

    async recover() {
      await mkdir(tasksRoot, { recursive: true, mode: 0o711 });
      for (const entry of await readdir(tasksRoot, { withFileTypes: true })) {
        if (!entry.isDirectory()) {
          // Spares of a previous agent exit by themselves; their sockets stay behind.
          if (entry.name.startsWith('spare-')) await rm(join(tasksRoot, entry.name), { force: true });
          continue;
        }
        for (const id of await readdir(join(tasksRoot, entry.name))) {
          await recoverOne(entry.name, id).catch((e: unknown) =>
            opts.log.error('cannot recover task', { namespace: entry.name, id, err: e }),
          );
        }
      }
      sparePool().warm();
    },

    async close() {
      closing = true;
      clearInterval(oomWatch);
      await spares?.close();
      for (const t of tasks.values()) t.shim?.close();
      for (const t of tasks.values()) t.shim = undefined;
    },
  };

  /**
   * OOM kills, found by polling the cgroup's kill counter (v1 memory.oom_control, v2 memory.events) of
   * running tasks once a second: simpler than an eventfd per cgroup, and late by at most a second.
   */
  const checkOomOf = async (t: Task): Promise<void> => {
    const paths = await cgroupPaths(runcRoot(t.namespace), t.id);
    if (!paths) return;
    const kills = await oomKills(paths);
    if (kills <= t.oomKills) return;
    t.oomKills = kills;
    opts.events.oom(t.namespace, { containerId: t.id });
  };
  const checkOom = async (): Promise<void> => {
    for (const t of tasks.values()) {
      const init = t.procs.get('');
      if (t.deleting || !init || init.status !== 'running') continue;
      await checkOomOf(t).catch(() => undefined);
    }
  };
  let oomChecking = false;
  const oomWatch = setInterval(() => {
    if (oomChecking) return;
    oomChecking = true;
    void checkOom().finally(() => (oomChecking = false));
  }, 1_000);
  oomWatch.unref();

  const metricOf = async (t: Task): Promise<TaskMetric | undefined> => {
    const paths = await cgroupPaths(runcRoot(t.namespace), t.id);
    if (!paths) return undefined;
    return { id: t.id, namespace: t.namespace, timestamp: new Date(), stats: await readStats(paths) };
  };

  const removeEmptyParents = async (ns: string): Promise<void> => {
    await rmdir(join(tasksRoot, ns)).catch(() => undefined);
  };

  const recoverOne = async (ns: string, id: string): Promise<void> => {
    const dir = join(tasksRoot, ns, id);
    let record: TaskRecord;
    try {
      record = JSON.parse(await readFile(join(dir, 'task.json'), 'utf8')) as TaskRecord;
    } catch {
      // Never finished its create: nothing of it runs.
      opts.log.warn('removing an unfinished task bundle', { namespace: ns, id });
      await cleanup(ns, id, dir, true);
      return;
    }
    const t: Task = {
      namespace: ns,
      id,
      dir,
      runtime: record.runtime,
      rootfsMounted: record.rootfsMounted,
      shim: undefined,
      paused: false,
      procs: new Map(),
      deleting: false,
      oomKills: 0,
    };
    let state: StateResult | undefined;
    try {
      const shim = await connectShim(join(dir, socketName));
      state = await shim.call<StateResult>({ method: 'state' });
      attach(t, shim);
    } catch {
      state = undefined;
    }
    tasks.set(key(ns, id), t);
    if (state) {
      for (const ps of state.processes) {
        const p = newProc(ps.execId, ps.io, ps.pid);
        p.status = ps.status === 'stopped' ? 'running' : ps.status;
        t.procs.set(ps.execId, p);
        if (ps.exit) onExit(t, ps.execId, ps.exit);
      }
      const rs = await runcFor(ns)
        .state(id)
        .catch(() => undefined);
      t.paused = rs?.status === 'paused';
      opts.log.info('re-adopted task', { namespace: ns, id, processes: state.processes.length });
      return;
    }
    // No supervisor: what it recorded is all there is.
    const init = newProc('', record.io, await readPidFile(dir));
    init.status = 'running';
    t.procs.set('', init);
    await supervisorLost(t);
  };

  return service;
}

function runcRoutes(runtime: string): boolean {
  return runcRuntimes.has(runtime);
}

async function readExit(dir: string, execId: string): Promise<Exit | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, exitFile(execId)), 'utf8')) as Exit;
  } catch {
    return undefined;
  }
}

async function readPidFile(dir: string): Promise<number> {
  try {
    return Number((await readFile(join(dir, 'init.pid'), 'utf8')).trim()) || 0;
  } catch {
    return 0;
  }
}

/**
 * runc refused the container (bad spec, missing executable, …): that is the request's fault, so it is
 * invalid_argument, with runc's own reason in containerd's words.
 */
function runcCreateError(e: unknown): ServiceError {
  if (e instanceof ServiceError && e.code !== ErrorCode.Unknown) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new ServiceError(ErrorCode.InvalidArgument, `failed to create shim task: OCI runtime create failed: ${msg}`, {
    cause: e,
  });
}

function runcExecError(e: unknown): ServiceError {
  if (e instanceof ServiceError && e.code !== ErrorCode.Unknown) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new ServiceError(ErrorCode.InvalidArgument, `OCI runtime exec failed: ${msg}`, { cause: e });
}
