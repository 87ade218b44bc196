import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type StateResult, socketName } from '../shim/protocol.js';
import type { TaskAgent } from './agent.js';
import { cleanup } from './cleanup.js';
import { attach, onExit, supervisorLost } from './exits.js';
import { newProc, newTask, type TaskRecord } from './task-registry.js';

/** Finds the tasks left by a previous agent: re-adopts the running ones, reports the exits it missed. */
export async function recover(agent: TaskAgent): Promise<void> {
  await mkdir(agent.tasksRoot, { recursive: true, mode: 0o711 });
  for (const entry of await readdir(agent.tasksRoot, { withFileTypes: true })) {
    if (!entry.isDirectory()) {
      // Spares of a previous agent exit by themselves; their sockets stay behind.
      if (entry.name.startsWith('spare-')) await rm(join(agent.tasksRoot, entry.name), { force: true });
      continue;
    }
    for (const id of await readdir(join(agent.tasksRoot, entry.name))) {
      await recoverOne(agent, entry.name, id).catch((e: unknown) =>
        agent.log.error('cannot recover task', { namespace: entry.name, id, err: e }),
      );
    }
  }
  agent.sparePool().warm();
}

async function recoverOne(agent: TaskAgent, ns: string, id: string): Promise<void> {
  const dir = join(agent.tasksRoot, ns, id);
  let record: TaskRecord;
  try {
    record = JSON.parse(await readFile(join(dir, 'task.json'), 'utf8')) as TaskRecord;
  } catch {
    // Never finished its create: nothing of it runs.
    agent.log.warn('removing an unfinished task bundle', { namespace: ns, id });
    await cleanup(agent, ns, id, dir, true);
    return;
  }
  const t = newTask({ namespace: ns, id, dir, runtime: record.runtime, rootfsMounted: record.rootfsMounted });
  let state: StateResult | undefined;
  try {
    const shim = await agent.system.connectShim(join(dir, socketName), agent.shimOptions);
    state = await shim.call<StateResult>({ method: 'state' });
    attach(agent, t, shim);
  } catch {
    state = undefined;
  }
  agent.registry.add(t);
  if (state) {
    for (const ps of state.processes) {
      const p = newProc(ps.execId, ps.io, ps.pid);
      p.status = ps.status === 'stopped' ? 'running' : ps.status;
      t.procs.set(ps.execId, p);
      if (ps.exit) onExit(agent, t, ps.execId, ps.exit);
    }
    const rs = await agent
      .runcFor(ns)
      .state(id)
      .catch(() => undefined);
    t.paused = rs?.status === 'paused';
    agent.log.info('re-adopted task', { namespace: ns, id, processes: state.processes.length });
    return;
  }
  // No supervisor: what it recorded is all there is.
  const init = newProc('', record.io, await readPidFile(dir));
  init.status = 'running';
  t.procs.set('', init);
  await supervisorLost(agent, t);
}

async function readPidFile(dir: string): Promise<number> {
  try {
    return Number((await readFile(join(dir, 'init.pid'), 'utf8')).trim()) || 0;
  } catch {
    return 0;
  }
}
