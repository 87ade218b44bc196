import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type RequestContext, requireNamespace } from '@berth/common/context';
import { alreadyExists, ErrorCode, notImplemented, ServiceError } from '@berth/common/errors';
import { validateIdentifier } from '@berth/common/identifiers';
import type { ShimConnection } from '../shim/client.js';
import type { TaskAgent } from './agent.js';
import { cleanup } from './cleanup.js';
import { attach } from './exits.js';
import { parseSpec, runcCreateError, runcRoutes, runcRuntimes } from './spec.js';
import { newProc, newTask, type Task, type TaskRecord } from './task-registry.js';
import type { CreateRequest } from './types.js';

/**
 * Create: the container's spec and rootfs become a bundle, a spare supervisor takes it and runs `runc
 * create`. Any failure, or the client going away, removes everything the steps so far made.
 */
export async function createTask(agent: TaskAgent, ctx: RequestContext, req: CreateRequest): Promise<{ pid: number }> {
  const ns = requireNamespace(ctx);
  validateIdentifier(req.containerId);
  if (agent.registry.taken(ns, req.containerId)) throw alreadyExists(`task ${req.containerId}`);
  const container = await agent.containers.get(ctx, req.containerId);
  if (req.checkpoint) throw notImplemented('restoring a task from a checkpoint');
  if (!runcRoutes(container.runtime)) {
    throw notImplemented(
      `runtime ${JSON.stringify(container.runtime)} (this agent runs ${[...runcRuntimes].join(', ')})`,
    );
  }
  const spec = parseSpec(container.spec, ns, req.containerId);
  if (req.io.terminal) (spec.process as Record<string, unknown>).terminal = true;
  agent.registry.reserve(ns, req.containerId);
  const dir = join(agent.tasksRoot, ns, req.containerId);
  let mounted = false;
  let shim: ShimConnection | undefined;
  let created: Task | undefined;
  // A client that went away (killed, deadline passed) gets no task: nothing would ever delete it. Checked
  // after every step; the rollback below removes what the steps so far made (runc container, mounts, dir).
  const stillWanted = (): void => {
    if (ctx.signal.aborted) throw new ServiceError(ErrorCode.Canceled, `create ${req.containerId}: context canceled`);
  };
  try {
    if (existsSync(dir)) {
      // Left by a task whose agent died mid-create or mid-delete: nothing runs there (it is not a task).
      await cleanup(agent, ns, req.containerId, dir, true);
    }
    await mkdir(join(dir, 'rootfs'), { recursive: true, mode: 0o711 });
    await mkdir(agent.runcRoot(ns), { recursive: true, mode: 0o711 });
    if (req.rootfs.length > 0) {
      await agent.system.mountAll(req.rootfs, join(dir, 'rootfs')).catch((e: unknown) => {
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
    shim = await agent.sparePool().take();
    stillWanted();
    await shim.call(
      { method: 'init', dir, id: req.containerId, runcRoot: agent.runcRoot(ns), runc: agent.runcBinary },
      // Not given up with the request: the rollback of an abandoned Create must know what the supervisor did.
    );
    const t = newTask({ namespace: ns, id: req.containerId, dir, runtime: container.runtime, rootfsMounted: mounted });
    t.procs.set('', newProc('', req.io));
    created = t;
    attach(agent, t, shim);
    let pid: number;
    try {
      ({ pid } = await shim.call<{ pid: number }>(
        // Not given up with the request: a rollback while runc create still runs would leave its container.
        { method: 'create', bundle: dir, io: req.io },
      ));
    } catch (e) {
      throw runcCreateError(e);
    }
    stillWanted();
    const init = t.procs.get('');
    if (init) init.pid = pid;
    agent.registry.add(t);
    agent.sparePool().replenish();
    agent.events.create(ns, {
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
    await cleanup(agent, ns, req.containerId, dir, mounted).catch((err: unknown) =>
      agent.log.warn('cleanup after failed create', { namespace: ns, id: req.containerId, err }),
    );
    throw e;
  } finally {
    agent.registry.release(ns, req.containerId);
  }
}
