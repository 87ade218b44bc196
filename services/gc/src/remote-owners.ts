import {
  type CollectableRecords,
  type CollectableRemoval,
  countsFromPb,
  recordsFromPb,
  removalToPb,
  sweepFromPb,
} from '@berth/common/collectable';
import type { Db } from '@berth/common/db';
import { changePoint, holdCollectionLockExclusive } from '@berth/common/gc-lock';
import { channelOptions, dial, invoke } from '@berth/common/grpc-client';
import type { Logger } from '@berth/common/log';
import { awaitNodeSweeps } from '@berth/common/node-sweep';
import {
  CollectableClient,
  type ReadCollectableResponse,
  type RemoveCollectableResponse,
  type SweepBackendResponse,
} from '@berth/proto/berth/internal/v1/collectable';
import type * as grpc from '@grpc/grpc-js';
import type { BackendOptions } from './in-process-owners.js';
import type { Election } from './leader/election.js';
import type { Owners } from './owners.js';
import type { Resources } from './rules/resources.js';

/** Where the owners serve `berth.internal.v1.Collectable`. */
export interface OwnerAddresses {
  readonly metadata: string;
  readonly content: string;
  /** A node's snapshots service: reads every node's records; frees its own directories. */
  readonly snapshots: string;
}

const callMs = 60_000;
/** How long a running node takes at most to answer that it started freeing its directories. */
const nodeStartMs = 3_000;

/**
 * The owners in other processes: the collection runs in a transaction on the leader's own session, which
 * holds the collection lock exclusively while the owners are read and asked to remove; each removal is fenced
 * by that session's pid, so a deposed leader's sweep cannot commit.
 */
export function remoteOwners(
  election: Election,
  addresses: OwnerAddresses,
  backend: BackendOptions,
  log: Logger,
  db: Db,
): Owners & { close(): void } {
  const connect = (a: string): CollectableClient =>
    dial(CollectableClient, a, {
      ...channelOptions,
      'grpc.max_receive_message_length': 512 * 1024 * 1024,
    });
  const clients = {
    metadata: connect(addresses.metadata),
    content: connect(addresses.content),
    snapshots: connect(addresses.snapshots),
  };
  const ctx = () => ({ namespace: undefined, lease: undefined, signal: AbortSignal.timeout(callMs) });
  const opts = (o: Partial<grpc.CallOptions>): Partial<grpc.CallOptions> => ({ ...o, deadline: Date.now() + callMs });
  // An owner that is restarting (a node, a replica) is waited for, up to the call's deadline: without this a
  // call made while its channel waits to dial again (up to 2 s after the owner is back) fails at once, and so
  // does the collection, and every `images rm --sync` waiting on it.
  const ready = (md: grpc.Metadata): grpc.Metadata => {
    md.setOptions({ waitForReady: true });
    return md;
  };
  const read = async (c: CollectableClient, since = ''): Promise<CollectableRecords> =>
    recordsFromPb(
      await invoke<ReadCollectableResponse>(
        (md, o, cb) => c.read({ changedSince: since }, ready(md), opts(o), cb),
        ctx(),
      ),
    );
  const readAll = async (since?: string): Promise<Resources> => {
    const [m, c, s] = await Promise.all([
      read(clients.metadata, since),
      read(clients.content, since),
      read(clients.snapshots, since),
    ]);
    return {
      leases: m.leases,
      images: m.images,
      containers: m.containers,
      blobs: c.blobs,
      ingests: c.ingests,
      snapshots: s.snapshots,
    };
  };
  const none: CollectableRemoval = { leases: [], images: [], blobs: [], ingests: [], snapshots: [] };

  return {
    changePoint: () =>
      election.transaction(async (q) => {
        await holdCollectionLockExclusive(q);
        return changePoint(q);
      }),
    readAll: () => readAll(),
    exclusive: (fn) =>
      election.transaction(async (q, pid) => {
        await holdCollectionLockExclusive(q);
        const remove = async (c: CollectableClient, plan: Partial<CollectableRemoval>) =>
          countsFromPb(
            await invoke<RemoveCollectableResponse>(
              (md, o, cb) => c.remove(removalToPb(pid, { ...none, ...plan }), ready(md), opts(o), cb),
              ctx(),
            ),
          );
        return fn({
          readChanged: (since) => readAll(since),
          changePoint: () => changePoint(q),
          removeMetadata: async (plan) => {
            const c = await remove(clients.metadata, { leases: [...plan.leases], images: [...plan.images] });
            return { leases: c.leases, images: c.images };
          },
          removeContent: async (plan) => {
            const c = await remove(clients.content, { blobs: [...plan.blobs], ingests: [...plan.ingests] });
            return { blobs: c.blobs, ingests: c.ingests };
          },
          removeSnapshots: async (plan) => {
            const c = await remove(clients.snapshots, { snapshots: [...plan.snapshots] });
            return { records: c.snapshots, nodes: c.nodes };
          },
        });
      }),
    async sweepContent() {
      const s = sweepFromPb(
        await invoke<SweepBackendResponse>(
          (md, o, cb) =>
            clients.content.sweepBackend(
              { graceMs: backend.contentGraceMs, deleteTimeoutMs: backend.deleteTimeoutMs },
              ready(md),
              opts(o),
              cb,
            ),
          ctx(),
        ),
      );
      return s;
    },
    async sweepSnapshots(nodes) {
      // The nodes are not addressed one by one (a DaemonSet's pods, a DNS name): each is asked, and answers,
      // through the database they all share.
      const r = await awaitNodeSweeps(db, nodes, { startMs: nodeStartMs, doneMs: backend.deleteTimeoutMs });
      if (r.skipped.length > 0)
        log.warn('gc: nodes did not free their snapshot directories now; they will when they next reconcile', {
          nodes: r.skipped,
        });
      return r;
    },
    close() {
      for (const c of Object.values(clients)) c.close();
    },
  };
}
