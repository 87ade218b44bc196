import { SnapshotCommit, SnapshotPrepare, SnapshotRemove } from '@berth/proto/containerd/events/snapshot';

/** An event ready for the outbox: containerd's topic and type URL, payload already encoded. */
export interface EncodedEvent {
  readonly topic: string;
  readonly typeUrl: string;
  readonly payload: Uint8Array;
}

/** The events a snapshotter emits, as containerd's snapshots service publishes them. */
export interface SnapshotEvents {
  prepared(key: string, parent: string): EncodedEvent;
  committed(key: string, name: string): EncodedEvent;
  removed(key: string): EncodedEvent;
}

export const snapshotEvents: SnapshotEvents = {
  prepared: (key, parent) => ({
    topic: '/snapshot/prepare',
    typeUrl: 'containerd.events.SnapshotPrepare',
    payload: SnapshotPrepare.encode({ key, parent }).finish(),
  }),
  committed: (key, name) => ({
    topic: '/snapshot/commit',
    typeUrl: 'containerd.events.SnapshotCommit',
    payload: SnapshotCommit.encode({ key, name }).finish(),
  }),
  removed: (key) => ({
    topic: '/snapshot/remove',
    typeUrl: 'containerd.events.SnapshotRemove',
    payload: SnapshotRemove.encode({ key }).finish(),
  }),
};
