/**
 * A bounded hand-over of chunks from a writer to one reader: the writer waits (its push returns a promise)
 * while more than `limitBytes` are queued; the reader's iterator ends when the writer ends committed, and
 * throws when it ends otherwise. A reader that stops early releases the writer, whose pushes are then dropped.
 */
export function byteQueue(limitBytes: number): {
  readonly source: AsyncIterable<Buffer>;
  push(chunk: Buffer): Promise<void> | undefined;
  end(committed: boolean): void;
  /** The reader is gone (or never came): drop what is queued, release the writer, drop later pushes. */
  close(): void;
} {
  const chunks: Buffer[] = [];
  let queued = 0;
  let ended: boolean | undefined;
  let closed = false;
  let wakeReader: (() => void) | undefined;
  let wakeWriter: (() => void) | undefined;
  const releaseWriter = (): void => {
    const w = wakeWriter;
    wakeWriter = undefined;
    w?.();
  };
  async function* read(): AsyncGenerator<Buffer> {
    try {
      for (;;) {
        const c = chunks.shift();
        if (c) {
          queued -= c.length;
          if (queued <= limitBytes) releaseWriter();
          yield c;
          continue;
        }
        if (ended === true) return;
        if (ended === false) throw new Error('the write ended before it was committed');
        await new Promise<void>((r) => {
          wakeReader = r;
        });
        wakeReader = undefined;
      }
    } finally {
      close();
    }
  }
  const close = (): void => {
    closed = true;
    chunks.length = 0;
    queued = 0;
    releaseWriter();
  };
  return {
    close,
    source: read(),
    push(chunk) {
      if (closed || ended !== undefined) return undefined;
      chunks.push(chunk);
      queued += chunk.length;
      wakeReader?.();
      if (queued <= limitBytes) return undefined;
      return new Promise<void>((r) => {
        wakeWriter = r;
      });
    },
    end(committed) {
      if (ended !== undefined) return;
      ended = committed;
      wakeReader?.();
      releaseWriter();
    },
  };
}
