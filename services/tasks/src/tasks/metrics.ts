import { invalidArgument } from '@berth/common/errors';
import { adaptorFromObject, FilterSyntaxError, parseFilters } from '@berth/common/filters';
import type { TaskAgent } from './agent.js';
import { taskCgroups } from './oom-watch.js';
import type { Task } from './task-registry.js';
import type { TaskMetric } from './types.js';

/** The task's cgroup statistics, or undefined when it has no cgroup (yet or any more). */
export async function metricOf(agent: TaskAgent, t: Task): Promise<TaskMetric | undefined> {
  const paths = await taskCgroups(agent, t);
  if (!paths) return undefined;
  return { id: t.id, namespace: t.namespace, timestamp: new Date(), stats: await agent.system.readStats(paths) };
}

/** Metrics of the tasks (every namespace, as containerd's) that match containerd's filters. */
export async function filteredMetrics(agent: TaskAgent, filters: readonly string[]): Promise<TaskMetric[]> {
  let filter: ReturnType<typeof parseFilters>;
  try {
    filter = parseFilters(filters);
  } catch (e) {
    if (e instanceof FilterSyntaxError) throw invalidArgument(e.message);
    throw e;
  }
  const out: TaskMetric[] = [];
  for (const t of agent.registry.all()) {
    if (t.deleting) continue;
    if (!filter.match(adaptorFromObject({ id: t.id, namespace: t.namespace, runtime: t.runtime }))) continue;
    const m = await metricOf(agent, t);
    if (m) out.push(m);
  }
  return out;
}

/** Metrics of every task on the node, for the Prometheus exporter. */
export async function allMetrics(agent: TaskAgent): Promise<TaskMetric[]> {
  const out: TaskMetric[] = [];
  for (const t of agent.registry.all()) {
    const m = t.deleting ? undefined : await metricOf(agent, t);
    if (m) out.push(m);
  }
  return out;
}
