import { rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ErrorCode, ServiceError } from '@berth/common/errors';
import type { ShimConnection } from '../shim/client.js';
import type { TaskAgent } from './agent.js';

/**
 * Removes what a task leaves on the node: runc state, rootfs mounts, the bundle, the cgroup. With the
 * task's supervisor, runc delete runs there (forking it is far cheaper than forking the agent), and the
 * supervisor is shut down once runc's state is gone. `cgroups`: the task's cgroup directories when already
 * known (Task.cgroups); otherwise they are read from runc's state before runc delete removes it.
 */
export async function cleanup(
  agent: TaskAgent,
  ns: string,
  id: string,
  dir: string,
  mounted: boolean,
  shim?: ShimConnection,
  cgroups?: Readonly<Record<string, string>>,
): Promise<void> {
  const paths = cgroups ?? (await agent.system.cgroupPaths(agent.runcRoot(ns), id));
  let unresponsive = false;
  const runcDelete = async (): Promise<void> => {
    if (shim) {
      try {
        await shim.call({ method: 'delete' });
        return;
      } catch (e) {
        unresponsive = e instanceof ServiceError && e.code === ErrorCode.DeadlineExceeded;
        if (!(e instanceof ServiceError && (e.code === ErrorCode.Unavailable || unresponsive))) throw e;
        // The supervisor is gone, or does not answer: the agent runs runc itself.
        if (unresponsive) agent.log.warn('task supervisor did not answer delete', { namespace: ns, id, err: e });
      }
    }
    await agent.runcFor(ns).delete(id, true);
  };
  await runcDelete().catch((e: unknown) => {
    if (!(e instanceof Error && /does not exist|not exist/.test(e.message))) {
      agent.log.warn('runc delete failed', { namespace: ns, id, err: e });
    }
  });
  if (shim) {
    // A supervisor that did not answer delete would hold this for another timeout.
    if (!unresponsive) await shim.call({ method: 'shutdown' }).catch(() => undefined);
    shim.close();
  }
  if (mounted) await agent.system.unmountAll(join(dir, 'rootfs'));
  // runc removes the container's cgroup; an empty one it left (it never held a process) goes here.
  for (const p of Object.values(paths ?? {})) await rmdir(p).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
}

/** Removes the namespace's task dir once its last task is gone. */
export async function removeEmptyParents(agent: TaskAgent, ns: string): Promise<void> {
  await rmdir(join(agent.tasksRoot, ns)).catch(() => undefined);
}
