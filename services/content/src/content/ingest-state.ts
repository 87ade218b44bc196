import { createHash, type Hash, randomUUID } from 'node:crypto';
import type { Ingest } from '../store/blob-store.js';
import { RefLocks } from './locks.js';
import type { Writer } from './types.js';

/** How long a writer's database lock lasts without renewal (a crashed replica's ingests free up after it). */
export const lockMs = 30_000;
/** Unleased ingests become collectible after this, as in containerd. */
export const ingestExpiryMs = 24 * 3600_000;
/** Hash states kept for ingests interrupted in this process; beyond this the oldest are re-hashed on resume. */
const maxSuspended = 1024;

/** The hash state of an ingest's bytes so far. */
export interface Suspended {
  readonly hash: Hash;
  readonly offset: number;
}

/** What this process knows of ingests beyond the database: its lock owner id, open writers and hash states. */
export class IngestState {
  /** This process as the owner of ingest row locks. */
  readonly owner = randomUUID();
  readonly locks = new RefLocks();
  /** Writers open in this process, by backend key: Status answers from them without touching the disk. */
  readonly active = new Map<string, Writer>();
  /** Hash states of ingests interrupted in this process, by backend key, oldest first. */
  readonly suspended = new Map<string, Suspended>();

  keep(bref: string, s: Suspended): void {
    this.suspended.delete(bref);
    this.suspended.set(bref, s);
    if (this.suspended.size > maxSuspended) {
      const oldest = this.suspended.keys().next().value;
      if (oldest !== undefined) this.suspended.delete(oldest);
    }
  }
}

/** Recomputes the hash state of what an ingest already holds (resume after a restart or on another replica). */
export async function rehash(ingest: Ingest): Promise<Suspended> {
  const hash = createHash('sha256');
  let offset = 0;
  for await (const chunk of ingest.readPrefix()) {
    hash.update(chunk);
    offset += chunk.length;
  }
  return { hash, offset };
}
