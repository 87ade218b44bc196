/**
 * What a differ in the same process (all-in-one) learns of ingests as they happen, to unpack layers early:
 * each Write opened for an expected digest (it may take the bytes as they arrive) and each blob committed.
 */
export interface IngestObserver {
  /**
   * A Write of `expected` (`total` bytes, 0 if unknown) opened from offset 0. A tap returned gets every byte
   * in order as the writer takes it; the writer waits for a push that returns a promise.
   */
  opened(ns: string, expected: string, total: number): WriteTap | undefined;
  /** A Write in the namespace runs (whatever it writes) until the function returned is called. */
  active?(ns: string): () => void;
  /** A Write committed a new blob record. */
  committed(ns: string, digest: string, size: number): void;
}

export interface WriteTap {
  push(chunk: Buffer): Promise<void> | undefined;
  /** The write ended: committed (every byte was pushed, the digest checked), or not (truncated, closed, aborted). */
  end(committed: boolean): void;
}
