/** What gc-pause drives on each side (Berth in process, containerd over its socket): the same shape, loaded and churned alike. */
export interface GcSystem {
  readonly label: string;
  /** Whether the collector shares this process's event loop with the writer (its delay is then reported). */
  readonly sharesEventLoop: boolean;
  /** Loads N images (each its own manifest blob) and M snapshot records (chains of 10, all but M/10 unreferenced). */
  load(): Promise<string>;
  /** One image create (a new name each time): the writer that collections pause. */
  write(): Promise<void>;
  /**
   * Deletes the writer's images so far (untimed): the steady collections then see the loaded shape on both sides,
   * however many images each side's writer created during its backlog collection. Resolves to how many.
   */
  removeWriterImages(): Promise<number>;
  /** What a busy node leaves between two collections: 10 images removed, a chain of 100 unreferenced snapshots. */
  churn(): Promise<void>;
  /** One collection, triggered as this system's users do; resolves when it has finished. */
  collect(): Promise<CollectionFigures>;
  /**
   * Checks what is left against what the bench expects after `collections` steady collections, `writes` writer
   * images left; throws on a mismatch.
   */
  verify(collections: number, writes: number): Promise<string>;
  close(): Promise<void>;
}

export interface CollectionFigures {
  /** The longest time writers were held out by the collector's lock. */
  readonly pauseMs: number;
  /** The whole collection, records and their backing files or directories removed. */
  readonly totalMs: number;
  /** Other collections that ran (on their own schedule) while this one was awaited. */
  readonly others: number;
  readonly detail: string;
}

export interface ShapeOptions {
  readonly images: number;
  readonly snapshots: number;
}

/** Image `i` (1-based) of the loaded shape, the same name on both sides. */
export const imageName = (i: number): string => `registry.test/app${i}:v1`;
/** The snapshot chain-k that manifest `i` references (keys 0 … M/10 - 1: the first M/10 records). */
export const referencedSnapshot = (i: number, nSnapshots: number): string => `chain-${i % (nSnapshots / 10)}`;
