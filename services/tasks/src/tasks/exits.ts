import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ShimConnection } from '../shim/client.js';
import { type ExitNotice, exitFile } from '../shim/protocol.js';
import type { TaskAgent } from './agent.js';
import { checkOomOf } from './oom-watch.js';
import type { Task } from './task-registry.js';
import type { Exit } from './types.js';

/** Records an exit once and announces it once, even across agent restarts (marker file beside the status). */
export function onExit(agent: TaskAgent, t: Task, execId: string, exit: Exit): void {
  const p = t.procs.get(execId);
  if (!p || p.exit) return;
  p.exit = exit;
  p.status = 'stopped';
  if (execId === '') t.paused = false;
  p.resolveExit(exit);
  // An OOM kill ends the task at once: look at the counter before the exit is announced (containerd's
  // order) and before Delete removes the cgroup.
  const announcing = (execId === '' ? checkOomOf(agent, t) : Promise.resolve()).then(() =>
    announceExit(agent, t, execId, exit),
  );
  announcing.catch((e: unknown) => agent.log.warn('cannot announce exit', { id: t.id, execId, err: e }));
  if (execId === '') t.announcing = announcing;
}

export async function announceExit(agent: TaskAgent, t: Task, execId: string, exit: Exit): Promise<void> {
  const marker = join(t.dir, `${exitFile(execId)}.published`);
  if (existsSync(marker)) return;
  const id = `tasks-exit-${t.namespace}-${t.id}-${execId || 'init'}-${exit.pid}-${Date.parse(exit.exitedAt)}`;
  await agent.events.exit(
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
  await writeFile(marker, id).catch((e: unknown) => agent.log.warn('cannot record exit as announced', { err: e }));
}

/** Makes `shim` the task's supervisor connection: its exit notices become the task's exits. */
export function attach(agent: TaskAgent, t: Task, shim: ShimConnection): void {
  t.shim = shim;
  shim.onExit((n: ExitNotice) => onExit(agent, t, n.execId, n.exit));
  shim.onClose(() => {
    if (t.shim === shim) t.shim = undefined;
    // The agent closing its own connections (shutdown) is no lost supervisor: the task runs on without it.
    if (!t.deleting && !agent.closing) void supervisorLost(agent, t);
  });
}

/**
 * The supervisor is gone (killed): its exit files hold what it saw; a process it did not see exit can no
 * longer be waited for, so it is reported as killed (containerd reports a dead shim's task the same way).
 */
export async function supervisorLost(agent: TaskAgent, t: Task): Promise<void> {
  agent.log.warn('task supervisor lost', { namespace: t.namespace, id: t.id });
  for (const p of t.procs.values()) {
    if (p.exit) continue;
    const saved = await readExit(t.dir, p.execId);
    if (saved) {
      onExit(agent, t, p.execId, saved);
      continue;
    }
    if (p.execId === '' && p.status !== 'created') {
      await agent
        .runcFor(t.namespace)
        .kill(t.id, 9, true)
        .catch(() => undefined);
    }
    onExit(agent, t, p.execId, { pid: p.pid, exitStatus: 128 + 9, exitedAt: new Date().toISOString() });
  }
}

async function readExit(dir: string, execId: string): Promise<Exit | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, exitFile(execId)), 'utf8')) as Exit;
  } catch {
    return undefined;
  }
}
