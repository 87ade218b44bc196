/**
 * A server shared by several callers in one process: started on first acquire, stopped when the
 * last holder releases it.
 */

export interface Lease<T> {
  readonly value: T;
  /** Gives the lease back; the last release stops the shared value. Idempotent. */
  release(): Promise<void>;
}

export interface RefCounted<T> {
  acquire(): Promise<Lease<T>>;
}

export function refCounted<T>(start: () => Promise<T>, stop: (value: T) => Promise<void>): RefCounted<T> {
  let current: { promise: Promise<T>; refs: number } | undefined;
  return {
    async acquire() {
      if (current === undefined) {
        const entry = { promise: start(), refs: 0 };
        current = entry;
        // A failed start is not cached: the next acquire tries again.
        entry.promise.catch(() => {
          if (current === entry) current = undefined;
        });
      }
      const entry = current;
      entry.refs += 1;
      let value: T;
      try {
        value = await entry.promise;
      } catch (err) {
        entry.refs -= 1;
        throw err;
      }
      let released = false;
      return {
        value,
        async release() {
          if (released) return;
          released = true;
          entry.refs -= 1;
          if (entry.refs === 0) {
            if (current === entry) current = undefined;
            await stop(value);
          }
        },
      };
    },
  };
}
