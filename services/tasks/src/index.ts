import { join } from 'node:path';
import type { EventPublisher } from '@berth/common/event-bus';
import type { Logger } from '@berth/common/log';
import type { ServiceModule } from '@berth/common/service';
import { type ContainerRecords, remoteContainers } from '@berth/metadata/client';
import { TasksService } from '@berth/proto/containerd/services/tasks/v1/tasks';
import { registerTaskMetrics } from './cgroups/prometheus.js';
import { taskEvents } from './events.js';
import { createTasksServer } from './grpc/tasks-server.js';
import { createTaskService, type TaskService } from './tasks/service.js';

export type { TaskService } from './tasks/service.js';

export interface TasksDeps {
  readonly bus: EventPublisher;
  readonly log: Logger;
  /** The node's runtime state dir (tmpfs): bundles under <state>/tasks, runc's state under <state>/runc. */
  readonly state: string;
  /** This node's identity, part of event ids. */
  readonly node: string;
  /** Metadata's address, for container records (split mode). */
  readonly metadataAddress?: string;
  /** Container records from a metadata in this process (all-in-one), instead of dialing; the caller closes it. */
  readonly containers?: ContainerRecords;
  /** The runc binary; default `runc` on PATH. */
  readonly runc?: string;
  /** How long a call to the task supervisor may go unanswered (`stall-timeout-ms`); unset: the default. */
  readonly supervisorTimeoutMs?: number;
}

export interface TasksModule extends ServiceModule {
  readonly tasks: TaskService;
  /** Resolves once every event so far reached the bus. */
  flushEvents(): Promise<void>;
}

/** Builds the node's task agent: re-adopts the tasks a previous agent left running, then serves Tasks. */
export async function createTasksModule(deps: TasksDeps): Promise<TasksModule> {
  const log = deps.log.child({ service: 'tasks' });
  const dialed = deps.containers || !deps.metadataAddress ? undefined : remoteContainers(deps.metadataAddress);
  const containers = deps.containers ?? dialed;
  if (!containers) throw new Error('tasks needs metadata: its address or an in-process containers peer');
  const events = taskEvents(deps.bus, deps.node, log);
  const tasks = createTaskService({
    state: deps.state,
    ...(deps.runc !== undefined ? { runc: deps.runc } : {}),
    ...(deps.supervisorTimeoutMs !== undefined ? { supervisorTimeoutMs: deps.supervisorTimeoutMs } : {}),
    containers,
    events,
    log,
  });
  await tasks.recover();
  return {
    name: 'tasks',
    grpc: [{ definition: TasksService, implementation: createTasksServer(tasks, log) }],
    plugins: [
      {
        type: 'io.containerd.runtime.v2',
        id: 'task',
        exports: { root: join(deps.state, 'tasks') },
        requires: ['io.containerd.metadata.v1'],
      },
      { type: 'io.containerd.grpc.v1', id: 'tasks', requires: ['io.containerd.runtime.v2'] },
    ],
    tasks,
    flushEvents: events.flush,
    http(_app, registry) {
      if (registry) registerTaskMetrics(registry, () => tasks.allMetrics());
    },
    async close() {
      await tasks.close();
      await events.flush().catch(() => undefined);
      events.close();
      dialed?.close();
    },
  };
}
