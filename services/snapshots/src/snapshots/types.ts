import type { RequestContext } from '@berth/common/context';
import type { Mount } from '@berth/common/mount';

/** containerd's snapshot kinds; a committed snapshot is immutable and may be a parent. */
export const Kind = { View: 'view', Active: 'active', Committed: 'committed' } as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

export interface Info {
  /** The key (active/view) or name (committed), as the client knows it in its namespace. */
  readonly name: string;
  /** The committed parent's name; '' for a base snapshot. */
  readonly parent: string;
  readonly kind: Kind;
  readonly labels: Readonly<Record<string, string>>;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A snapshot's mounts are mountable on this host as given (absolute paths). */
export type { Mount };

export interface Usage {
  /** Bytes allocated on disk (512-byte blocks, hard links counted once). */
  readonly size: number;
  readonly inodes: number;
}

/**
 * One snapshotter seen through a namespace, with containerd's contract (snapshots/snapshotter.go and
 * metadata/snapshot.go). Every method requires the namespace; keys are private to it.
 */
export interface Snapshotter {
  readonly name: string;
  /**
   * Creates an active snapshot `key` on top of the committed `parent` ('' for none) and returns its mounts.
   * already_exists when `key` exists; not_found when `parent` does not; invalid_argument when the parent is
   * not committed. Publishes /snapshot/prepare.
   */
  prepare(ctx: RequestContext, key: string, parent: string, labels: Readonly<Record<string, string>>): Promise<Mount[]>;
  /** Like prepare, but read-only mounts and kind view; publishes nothing. */
  view(ctx: RequestContext, key: string, parent: string, labels: Readonly<Record<string, string>>): Promise<Mount[]>;
  /** Mounts of an active or view snapshot; failed_precondition for a committed one. */
  mounts(ctx: RequestContext, key: string): Promise<Mount[]>;
  /**
   * Turns active `key` into committed `name` (labels replaced, not inherited); `key` is gone afterwards.
   * already_exists when `name` exists; failed_precondition when `key` is not active. Publishes /snapshot/commit.
   */
  commit(ctx: RequestContext, name: string, key: string, labels: Readonly<Record<string, string>>): Promise<void>;
  /**
   * Removes the record; its directory goes in the background (as containerd leaves it to gc), so `idle`
   * and `cleanup` wait for it. failed_precondition while the snapshot has children.
   */
  remove(ctx: RequestContext, key: string): Promise<void>;
  /** not_found: `snapshot <key> does not exist: not found`. */
  stat(ctx: RequestContext, key: string): Promise<Info>;
  /** Updates labels only (`labels`, `labels.<key>` paths, or all labels without paths). */
  update(ctx: RequestContext, info: Pick<Info, 'name' | 'labels'>, paths: readonly string[]): Promise<Info>;
  /** Snapshots of the namespace matching any of `filters`, in key order. */
  list(ctx: RequestContext, filters: readonly string[]): Promise<Info[]>;
  /** Disk usage: measured for an active snapshot, recorded at commit for a committed one. */
  usage(ctx: RequestContext, key: string): Promise<Usage>;
  /** Removes directories that no record on this node refers to (crash leftovers). */
  cleanup(ctx: RequestContext): Promise<void>;
  /**
   * After a garbage collection removed records of this node: forgets the records no longer in the database,
   * then removes the directories no record names (as Cleanup). Returns how many records were forgotten.
   */
  reconcile(ctx: RequestContext): Promise<number>;
  /** Resolves once the directories of removed snapshots are gone. */
  idle(): Promise<void>;
}
