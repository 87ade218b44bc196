import type { EventPublisher } from '@berth/common/event-bus';
import type { Logger } from '@berth/common/log';
import {
  TaskCreate,
  TaskDelete,
  TaskExecAdded,
  TaskExecStarted,
  TaskExit,
  TaskOOM,
  TaskPaused,
  TaskResumed,
  TaskStart,
} from '@berth/proto/containerd/events/task';

/**
 * containerd's task events (topics and type URLs exactly as containerd publishes them). The agent has no
 * database, so events go straight to the bus, each with a durable id: a retry, or a restarted agent
 * re-announcing an exit it may already have announced, is deduplicated by the bus. Publication never fails
 * an RPC: undelivered events wait in memory and are retried with backoff.
 */
export interface TaskEvents {
  create(ns: string, e: TaskCreate): void;
  start(ns: string, e: TaskStart): void;
  /** Resolves once the bus accepted the event (the caller then records it as announced). */
  exit(ns: string, e: TaskExit, id: string): Promise<void>;
  delete(ns: string, e: TaskDelete): void;
  oom(ns: string, e: TaskOOM): void;
  execAdded(ns: string, e: TaskExecAdded): void;
  execStarted(ns: string, e: TaskExecStarted): void;
  paused(ns: string, e: TaskPaused): void;
  resumed(ns: string, e: TaskResumed): void;
  /** Resolves when everything queued so far is published. */
  flush(): Promise<void>;
  close(): void;
}

interface Pending {
  readonly namespace: string;
  readonly topic: string;
  readonly typeUrl: string;
  readonly value: Uint8Array;
  readonly id: string;
  readonly timestamp: Date;
  readonly done: Array<() => void>;
}

export function taskEvents(bus: EventPublisher, node: string, log: Logger): TaskEvents {
  const queue: Pending[] = [];
  let draining = false;
  let closed = false;
  let seq = 0;
  const boot = `${node}-${Date.now().toString(36)}`;

  /** Waits `ms`, or less if the bus comes back from an outage meanwhile. */
  const backoff = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        off?.();
        resolve();
      };
      const timer = setTimeout(done, ms);
      const off = bus.onAvailable?.(done);
    });

  const drain = async (): Promise<void> => {
    let failures = 0;
    while (queue.length > 0 && !closed) {
      const next = queue[0];
      if (!next) break;
      try {
        await bus.publish(
          {
            timestamp: next.timestamp,
            namespace: next.namespace,
            topic: next.topic,
            event: { typeUrl: next.typeUrl, value: next.value },
          },
          { id: next.id },
        );
        queue.shift();
        failures = 0;
        for (const d of next.done) d();
      } catch (e) {
        failures++;
        if (failures === 1 || failures % 20 === 0)
          log.warn('task event publish failed, will retry', { topic: next.topic, err: e });
        await backoff(Math.min(5_000, 50 * 2 ** Math.min(failures, 7)));
      }
    }
  };
  const kick = (): void => {
    if (draining) return;
    draining = true;
    void drain().finally(() => {
      draining = false;
      if (queue.length > 0 && !closed) kick();
    });
  };
  const push = (namespace: string, topic: string, name: string, value: Uint8Array, id?: string): Promise<void> =>
    new Promise<void>((resolve) => {
      queue.push({
        namespace,
        topic,
        typeUrl: `containerd.events.${name}`,
        value,
        id: id ?? `tasks-${boot}-${++seq}`,
        timestamp: new Date(),
        done: [resolve],
      });
      kick();
    });

  return {
    create: (ns, e) => void push(ns, '/tasks/create', 'TaskCreate', TaskCreate.encode(e).finish()),
    start: (ns, e) => void push(ns, '/tasks/start', 'TaskStart', TaskStart.encode(e).finish()),
    exit: (ns, e, id) => push(ns, '/tasks/exit', 'TaskExit', TaskExit.encode(e).finish(), id),
    delete: (ns, e) => void push(ns, '/tasks/delete', 'TaskDelete', TaskDelete.encode(e).finish()),
    oom: (ns, e) => void push(ns, '/tasks/oom', 'TaskOOM', TaskOOM.encode(e).finish()),
    execAdded: (ns, e) => void push(ns, '/tasks/exec-added', 'TaskExecAdded', TaskExecAdded.encode(e).finish()),
    execStarted: (ns, e) => void push(ns, '/tasks/exec-started', 'TaskExecStarted', TaskExecStarted.encode(e).finish()),
    paused: (ns, e) => void push(ns, '/tasks/paused', 'TaskPaused', TaskPaused.encode(e).finish()),
    resumed: (ns, e) => void push(ns, '/tasks/resumed', 'TaskResumed', TaskResumed.encode(e).finish()),
    flush: async () => {
      if (queue.length === 0) return;
      const last = queue[queue.length - 1];
      if (last) await new Promise<void>((r) => last.done.push(r));
    },
    close: () => {
      closed = true;
    },
  };
}
