import { unavailable } from '@berth/common/errors';

/**
 * In-process ref locks (containerd's `content/local/locks.go`); the database lease on the ingest row
 * extends the exclusion across replicas.
 */
export class RefLocks {
  private readonly held = new Map<string, Date>();

  /**
   * Takes the lock, retrying briefly as containerd's store does (a client that just closed a stream may
   * still hold it for a moment); unavailable after that.
   */
  async acquire(key: string, ref: string): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      const since = this.held.get(key);
      if (since === undefined) {
        this.held.set(key, new Date());
        return;
      }
      if (attempt >= 8) throw lockedError(ref, since);
      await new Promise((r) => setTimeout(r, Math.random() * 2 ** attempt));
    }
  }

  release(key: string): void {
    this.held.delete(key);
  }

  /** Locks held now: one per writer open (or opening) in this process. */
  get size(): number {
    return this.held.size;
  }
}

/** The lock age is in the message so that a deadlock (old) can be told from contention (fresh). */
export function lockedError(ref: string, since: Date): Error {
  const age = ((Date.now() - since.getTime()) / 1000).toFixed(3);
  return unavailable(`ref ${ref} locked for ${age}s (since ${since.toISOString()})`);
}
