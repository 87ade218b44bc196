/**
 * What the collector reads from the owners of resources, as plain data. Owners return these shapes from
 * their gc read APIs (in process or over berth.internal.v1); the collector never reads their tables.
 */
export type Labels = Readonly<Record<string, string>>;

export interface LeaseResourceRef {
  readonly kind: 'content' | 'ingests' | 'snapshots';
  /** Set for snapshots, else ''. */
  readonly snapshotter: string;
  readonly id: string;
}

export interface LeaseRecord {
  readonly namespace: string;
  readonly id: string;
  readonly labels: Labels;
  readonly resources: readonly LeaseResourceRef[];
}

export interface ImageRecord {
  readonly namespace: string;
  readonly name: string;
  readonly target: string;
  readonly labels: Labels;
}

export interface ContainerRecord {
  readonly namespace: string;
  readonly id: string;
  readonly snapshotter: string;
  readonly snapshotKey: string;
  readonly labels: Labels;
}

/** Metadata's part: leases with what they hold, images, containers. */
export interface MetadataResources {
  readonly leases: readonly LeaseRecord[];
  readonly images: readonly ImageRecord[];
  readonly containers: readonly ContainerRecord[];
}

export interface BlobRecord {
  readonly namespace: string;
  readonly digest: string;
  readonly labels: Labels;
}

export interface IngestRecord {
  readonly namespace: string;
  readonly ref: string;
  /** The digest the ingest was opened with, '' when none. */
  readonly expected: string;
  /** Null: no expiry was set (a leased ingest), so only a lease keeps it. */
  readonly expiresAt: Date | null;
}

/** Content's part: each namespace's blob records and ingests. */
export interface ContentResources {
  readonly blobs: readonly BlobRecord[];
  readonly ingests: readonly IngestRecord[];
}

export interface SnapshotRecord {
  readonly namespace: string;
  readonly snapshotter: string;
  readonly key: string;
  /** The parent's key, '' for none. */
  readonly parent: string;
  readonly labels: Labels;
}

/** The snapshots' part: every node's records (a key names the same snapshot on every node). */
export interface SnapshotResources {
  readonly snapshots: readonly SnapshotRecord[];
}

export interface Resources extends MetadataResources, ContentResources, SnapshotResources {}
