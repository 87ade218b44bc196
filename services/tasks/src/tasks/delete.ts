import type { RequestContext } from '@berth/common/context';
import { failedPrecondition } from '@berth/common/errors';
import { getTask, type TaskAgent } from './agent.js';
import { cleanup, removeEmptyParents } from './cleanup.js';
import { announceExit, onExit } from './exits.js';
import { getProc, shimOf, statusOf, zeroTime } from './task-registry.js';
import type { Exit } from './types.js';

/** Delete of a stopped (or never started) task: its exit is announced, then everything it left is removed. */
export async function deleteTask(agent: TaskAgent, ctx: RequestContext, containerId: string): Promise<Exit> {
  const t = await getTask(agent, ctx, containerId);
  const init = getProc(t, '');
  const status = statusOf(t, init);
  if (status === 'running' || status === 'paused')
    throw failedPrecondition(`task ${containerId} must be stopped before deletion: ${status}`);
  t.deleting = true;
  try {
    if (init.status === 'created') {
      // Never started: runc delete --force kills the waiting init; its exit is the status we return.
      await agent
        .runcFor(t.namespace)
        .delete(t.id, true)
        .catch(() => undefined);
      await Promise.race([init.exited, new Promise((r) => setTimeout(r, 2_000))]);
      if (!init.exit) onExit(agent, t, '', { pid: init.pid, exitStatus: 128 + 9, exitedAt: new Date().toISOString() });
    }
    const exit = init.exit ?? { pid: init.pid, exitStatus: 0, exitedAt: new Date().toISOString() };
    // The exit is announced before the delete, as containerd orders them.
    await (t.announcing ?? announceExit(agent, t, '', exit)).catch(() => undefined);
    await cleanup(agent, t.namespace, t.id, t.dir, t.rootfsMounted, t.shim, t.cgroups);
    agent.registry.remove(t);
    await removeEmptyParents(agent, t.namespace);
    agent.events.delete(t.namespace, {
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
}

/** DeleteProcess: an exec process once stopped, or the task itself for the init process (exec id ''). */
export async function deleteProcess(
  agent: TaskAgent,
  ctx: RequestContext,
  containerId: string,
  execId: string,
): Promise<Exit & { id: string }> {
  const t = await getTask(agent, ctx, containerId);
  if (execId === '') return { ...(await deleteTask(agent, ctx, containerId)), id: containerId };
  const p = getProc(t, execId);
  if (p.status === 'running') throw failedPrecondition(`process ${execId} must be stopped before deletion: running`);
  await shimOf(t).call({ method: 'deleteExec', execId }); // waited for: the process table follows its answer
  t.procs.delete(execId);
  const exit = p.exit ?? { pid: p.pid, exitStatus: 0, exitedAt: zeroTime.toISOString() };
  return { ...exit, id: execId };
}
