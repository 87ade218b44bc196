import { createHash, type Hash } from 'node:crypto';

/** Incremental digests of one or more streams, read back as hex once every stream has ended. */
export interface Digester {
  /** Adds `chunk` to stream `i`. May return a promise: the caller waits before adding more. */
  update(i: number, chunk: Buffer): Promise<void> | undefined;
  digests(): Promise<string[]>;
  /** Releases the digester without reading it (after a failure). Never throws. */
  close(): Promise<void>;
}

/** Digests on the calling thread. */
export function inlineDigester(algorithms: readonly string[]): Digester {
  const hashes: Hash[] = algorithms.map((a) => createHash(a));
  return {
    update(i, chunk) {
      hashes[i]?.update(chunk);
      return undefined;
    },
    digests: async () => hashes.map((h) => h.digest('hex')),
    close: async () => undefined,
  };
}
