import { randomUUID } from 'node:crypto';
import type { Db } from './db.js';

/**
 * How a collector in its own process learns that the nodes whose snapshot records it removed have freed their
 * directories, without knowing where the nodes are: through the database every node is connected to.
 *
 * The collection's transaction notifies `sweepRequestChannel` with a node's name when it removed records of
 * that node; the node frees its directories (reconciles) on it. A collector that waits for the bytes then asks
 * again with a token (`node token`), and the node answers on `sweepAckChannel`: `started node token` as the
 * notification arrives, `done node token` once its directories are free. A node that does not answer
 * `started` within a short window is not running (it converges when it starts); one that started is awaited
 * up to the delete timeout.
 */
export const sweepRequestChannel = 'berth_snapshots_removed';
export const sweepAckChannel = 'berth_snapshots_swept';

export interface SweepRequest {
  readonly node: string;
  /** Present when the collector awaits this node's answer. */
  readonly token?: string;
}

export function parseSweepRequest(payload: string): SweepRequest {
  const [node = '', token] = payload.split(' ');
  return token ? { node, token } : { node };
}

export type SweepAckPhase = 'started' | 'done' | 'failed';

/** A node's answer to a request that carried a token. */
export async function ackSweep(db: Db, phase: SweepAckPhase, req: SweepRequest): Promise<void> {
  if (!req.token) return;
  await db.query('SELECT pg_notify($1, $2)', [sweepAckChannel, `${phase} ${req.node} ${req.token}`]);
}

export interface NodeSweepResult {
  /** Nodes that freed their directories. */
  readonly nodes: string[];
  /** Nodes that did not answer, or failed, or ran out of time: they free theirs when they next reconcile. */
  readonly skipped: string[];
}

/**
 * Asks each node to free its directories and waits for their answers: a node that does not start within
 * `startMs` (not running, or not listening) is skipped at once; one that started is awaited up to `doneMs`.
 */
export async function awaitNodeSweeps(
  db: Db,
  nodes: readonly string[],
  opts: { readonly startMs: number; readonly doneMs: number },
): Promise<NodeSweepResult> {
  if (nodes.length === 0) return { nodes: [], skipped: [] };
  const token = randomUUID();
  const started = new Set<string>();
  const done = new Set<string>();
  const failed = new Set<string>();
  let wake: () => void = () => undefined;
  const unlisten = await db.listen(
    sweepAckChannel,
    (payload) => {
      const [phase, node, t] = payload.split(' ');
      if (t !== token || node === undefined || !nodes.includes(node)) return;
      if (phase === 'started') started.add(node);
      else if (phase === 'done') done.add(node);
      else if (phase === 'failed') failed.add(node);
      wake();
    },
    () => undefined,
  );
  try {
    for (const node of nodes) await db.query('SELECT pg_notify($1, $2)', [sweepRequestChannel, `${node} ${token}`]);
    const t0 = Date.now();
    const finished = (): boolean => {
      const answered = (n: string): boolean => done.has(n) || failed.has(n);
      const elapsed = Date.now() - t0;
      if (elapsed >= opts.doneMs) return true;
      // Before startMs every node may still answer; after it only those that started are awaited.
      return nodes.every((n) => answered(n) || (elapsed >= opts.startMs && !started.has(n)));
    };
    while (!finished()) {
      const elapsed = Date.now() - t0;
      const next = elapsed < opts.startMs ? opts.startMs - elapsed : opts.doneMs - elapsed;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, next));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    wake = () => undefined;
    await unlisten();
  }
  return { nodes: nodes.filter((n) => done.has(n)), skipped: nodes.filter((n) => !done.has(n)) };
}
