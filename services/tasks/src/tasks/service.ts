import { randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RequestContext, requireNamespace } from '@berth/common/context';
import {
  alreadyExists,
  ErrorCode,
  failedPrecondition,
  invalidArgument,
  notFound,
  ServiceError,
  wrap,
} from '@berth/common/errors';
import { validateIdentifier } from '@berth/common/identifiers';
import { isProcessGone } from '../runc/runc.js';
import { createTaskAgent, getTask, type TaskServiceOptions } from './agent.js';
import { createTask } from './create.js';
import { deleteProcess, deleteTask } from './delete.js';
import { allMetrics, filteredMetrics } from './metrics.js';
import { watchOom } from './oom-watch.js';
import { recover } from './recovery.js';
import { parseExecProcess, runcExecError } from './spec.js';
import { getProc, newProc, shimOf, view } from './task-registry.js';
import type { CreateRequest, ExecRequest, Exit, ProcessInfo, ProcessView, TaskMetric } from './types.js';

export type { NodeSystem, TaskServiceOptions } from './agent.js';
export { zeroTime } from './task-registry.js';

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

/**
 * The node's task agent (containerd's runtime v2 task manager with runc shims). The lifecycle's larger
 * steps live in files of their own: create.ts, delete.ts, exits.ts (exit records and a lost supervisor),
 * recovery.ts, oom-watch.ts, metrics.ts; the state they share is agent.ts's.
 */
export function createTaskService(opts: TaskServiceOptions): TaskService {
  const agent = createTaskAgent(opts);
  const stopOomWatch = watchOom(agent);

  return {
    create: (ctx, req) => createTask(agent, ctx, req),

    async start(ctx, containerId, execId) {
      const t = await getTask(agent, ctx, containerId);
      const p = getProc(t, execId);
      if (p.status === 'stopped') throw failedPrecondition(`cannot start a stopped process`);
      if (p.status === 'running') throw failedPrecondition(`cannot start a running process`);
      const { pid } = await shimOf(t)
        .call<{ pid: number }>({ method: 'start', execId }) // the agent's state follows the supervisor's answer
        .catch((e: unknown) => {
          throw execId === '' ? wrap(e, 'OCI runtime start failed') : runcExecError(e);
        });
      p.pid = pid;
      if (p.status === 'created') p.status = 'running';
      if (execId === '') opts.events.start(t.namespace, { containerId: t.id, pid });
      else opts.events.execStarted(t.namespace, { containerId: t.id, execId, pid });
      return { pid };
    },

    delete: (ctx, containerId) => deleteTask(agent, ctx, containerId),
    deleteProcess: (ctx, containerId, execId) => deleteProcess(agent, ctx, containerId, execId),

    async get(ctx, containerId, execId) {
      const t = await getTask(agent, ctx, containerId);
      return view(t, getProc(t, execId));
    },

    async list(ctx) {
      const ns = requireNamespace(ctx);
      const out: ProcessView[] = [];
      for (const t of agent.registry.all()) {
        if (t.namespace !== ns || t.deleting) continue;
        const init = t.procs.get('');
        if (init) out.push(view(t, init));
      }
      return out;
    },

    async kill(ctx, containerId, execId, signal, all) {
      const t = await getTask(agent, ctx, containerId);
      const p = getProc(t, execId);
      if (p.status === 'stopped') throw notFound('process already finished');
      try {
        // runc runs in the supervisor: forking the agent (hundreds of MB with an embedded database) costs
        // ~20 ms of blocked event loop per runc, forking the small supervisor a fraction of that.
        if (execId === '' && t.shim) await t.shim.call({ method: 'kill', signal, all }, { signal: ctx.signal });
        else if (execId === '') await agent.runcFor(t.namespace).kill(t.id, signal, all);
        else process.kill(p.pid, signal);
      } catch (e) {
        if (isProcessGone(e) || (e as { code?: string }).code === 'ESRCH') throw notFound('process already finished');
        throw wrap(e, 'OCI runtime kill failed');
      }
    },

    async exec(ctx, req) {
      const t = await getTask(agent, ctx, req.containerId);
      validateIdentifier(req.execId);
      if (t.procs.has(req.execId)) throw alreadyExists(`id ${req.execId}`);
      const init = getProc(t, '');
      if (init.status === 'stopped') throw failedPrecondition(`container ${t.id} is not running`);
      const process = parseExecProcess(req.spec, req.io.terminal);
      const processFile = join(t.dir, `exec-${req.execId}.json`);
      await writeFile(processFile, JSON.stringify(process));
      t.procs.set(req.execId, newProc(req.execId, req.io));
      try {
        // Waited for, not given up with the request: the process table follows the supervisor's answer.
        await shimOf(t).call({ method: 'exec', execId: req.execId, io: req.io, processFile });
      } catch (e) {
        t.procs.delete(req.execId);
        throw e;
      }
      opts.events.execAdded(t.namespace, { containerId: t.id, execId: req.execId });
    },

    async resizePty(ctx, containerId, execId, width, height) {
      const t = await getTask(agent, ctx, containerId);
      getProc(t, execId);
      await shimOf(t).call({ method: 'resize', execId, width, height }, { signal: ctx.signal });
    },

    async closeIO(ctx, containerId, execId) {
      const t = await getTask(agent, ctx, containerId);
      getProc(t, execId);
      await shimOf(t).call({ method: 'closeIO', execId }, { signal: ctx.signal });
    },

    async pause(ctx, containerId) {
      const t = await getTask(agent, ctx, containerId);
      const init = getProc(t, '');
      if (init.status !== 'running') throw failedPrecondition(`task ${containerId} is not running`);
      await agent
        .runcFor(t.namespace)
        .pause(t.id)
        .catch((e: unknown) => {
          throw wrap(e, 'OCI runtime pause failed');
        });
      t.paused = true;
      opts.events.paused(t.namespace, { containerId: t.id });
    },

    async resume(ctx, containerId) {
      const t = await getTask(agent, ctx, containerId);
      if (!t.paused) throw failedPrecondition(`task ${containerId} is not paused`);
      await agent
        .runcFor(t.namespace)
        .resume(t.id)
        .catch((e: unknown) => {
          throw wrap(e, 'OCI runtime resume failed');
        });
      t.paused = false;
      opts.events.resumed(t.namespace, { containerId: t.id });
    },

    async listPids(ctx, containerId) {
      const t = await getTask(agent, ctx, containerId);
      const pids = await agent
        .runcFor(t.namespace)
        .ps(t.id)
        .catch((e: unknown) => {
          throw wrap(e, 'OCI runtime ps failed');
        });
      const execByPid = new Map<number, string>();
      for (const p of t.procs.values()) if (p.execId !== '' && p.pid > 0) execByPid.set(p.pid, p.execId);
      return pids.map((pid) => ({ pid, execId: execByPid.get(pid) }));
    },

    async update(ctx, containerId, resources) {
      const t = await getTask(agent, ctx, containerId);
      let parsed: unknown;
      try {
        parsed = JSON.parse(resources.toString('utf8'));
      } catch (e) {
        throw invalidArgument('resources are not JSON LinuxResources', e);
      }
      const file = join(t.dir, `resources-${randomBytes(4).toString('hex')}.json`);
      await writeFile(file, JSON.stringify(parsed));
      try {
        await agent.runcFor(t.namespace).update(t.id, file);
      } catch (e) {
        throw wrap(e, 'OCI runtime update failed');
      } finally {
        await rm(file, { force: true });
      }
    },

    metrics: (_ctx, filters) => filteredMetrics(agent, filters),

    async wait(ctx, containerId, execId) {
      const t = await getTask(agent, ctx, containerId);
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

    allMetrics: () => allMetrics(agent),
    recover: () => recover(agent),

    async close() {
      agent.closing = true;
      stopOomWatch();
      await agent.openedSparePool()?.close();
      for (const t of agent.registry.all()) t.shim?.close();
      for (const t of agent.registry.all()) t.shim = undefined;
    },
  };
}
