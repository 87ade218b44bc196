import {
  type CollectableRecords,
  type CollectableRemoval,
  countsFromPb,
  recordsFromPb,
  removalToPb,
  sweepFromPb,
} from '@berth/common/collectable';
import { changePoint, holdCollectionLockExclusive } from '@berth/common/gc-lock';
import { invoke } from '@berth/common/grpc-client';
import { channelOptions, dialTarget } from '@berth/common/grpc-server';
import type { Logger } from '@berth/common/log';
import { channelCredentialsFor } from '@berth/common/tls/credentials';
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
): Owners & { close(): void } {
  const dial = (a: string): CollectableClient =>
    new CollectableClient(dialTarget(a), channelCredentialsFor(a), {
      ...channelOptions,
      'grpc.max_receive_message_length': 512 * 1024 * 1024,
    });
  const clients = {
    metadata: dial(addresses.metadata),
    content: dial(addresses.content),
    snapshots: dial(addresses.snapshots),
  };
  const ctx = () => ({ namespace: undefined, lease: undefined, signal: AbortSignal.timeout(callMs) });
  const opts = (o: Partial<grpc.CallOptions>): Partial<grpc.CallOptions> => ({ ...o, deadline: Date.now() + callMs });
  const read = async (c: CollectableClient, since = ''): Promise<CollectableRecords> =>
    recordsFromPb(
      await invoke<ReadCollectableResponse>((md, o, cb) => c.read({ changedSince: since }, md, opts(o), cb), ctx()),
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
              (md, o, cb) => c.remove(removalToPb(pid, { ...none, ...plan }), md, opts(o), cb),
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
              { graceMs: backend.contentGraceMs, deleteTimeoutMs: backend.deleteTimeoutMs, nodes: [] },
              md,
              opts(o),
              cb,
            ),
          ctx(),
        ),
      );
      return s;
    },
    async sweepSnapshots(nodes) {
      if (nodes.length === 0) return { nodes: [], skipped: [] };
      try {
        const s = sweepFromPb(
          await invoke<SweepBackendResponse>(
            (md, o, cb) =>
              clients.snapshots.sweepBackend(
                { graceMs: 0, deleteTimeoutMs: backend.deleteTimeoutMs, nodes: [...nodes] },
                md,
                { ...o, deadline: Date.now() + backend.deleteTimeoutMs },
                cb,
              ),
            ctx(),
          ),
        );
        // The other nodes free theirs on the notification of the removal (and again when they start).
        return { nodes: s.nodesSwept, skipped: nodes.filter((n) => !s.nodesSwept.includes(n)) };
      } catch (e) {
        log.warn('gc: the snapshots node did not free its directories in time', { err: e });
        return { nodes: [], skipped: [...nodes] };
      }
    },
    close() {
      for (const c of Object.values(clients)) c.close();
    },
  };
}
