import type { TaskAgent } from './agent.js';
import type { Task } from './task-registry.js';

/** The task's cgroup directories, read from runc's state the first time they are found, then remembered. */
export async function taskCgroups(agent: TaskAgent, t: Task): Promise<Readonly<Record<string, string>> | undefined> {
  if (t.cgroups) return t.cgroups;
  const paths = await agent.system.cgroupPaths(agent.runcRoot(t.namespace), t.id);
  if (paths) t.cgroups = paths;
  return paths;
}

/** Announces the task's OOM kills since the last look (the cgroup's kill counter went up). */
export async function checkOomOf(agent: TaskAgent, t: Task): Promise<void> {
  const paths = await taskCgroups(agent, t);
  if (!paths) return;
  const kills = await agent.system.oomKills(paths);
  if (kills <= t.oomKills) return;
  t.oomKills = kills;
  agent.events.oom(t.namespace, { containerId: t.id });
}

/**
 * OOM kills, found by polling the cgroup's kill counter (v1 memory.oom_control, v2 memory.events) of
 * running tasks once a second: simpler than an eventfd per cgroup, and late by at most a second.
 * Returns the function that stops the watch.
 */
export function watchOom(agent: TaskAgent, intervalMs = 1_000): () => void {
  const checkOom = async (): Promise<void> => {
    for (const t of agent.registry.all()) {
      const init = t.procs.get('');
      if (t.deleting || !init || init.status !== 'running') continue;
      await checkOomOf(agent, t).catch(() => undefined);
    }
  };
  let checking = false;
  const timer = setInterval(() => {
    if (checking) return;
    checking = true;
    void checkOom().finally(() => (checking = false));
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
