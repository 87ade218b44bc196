import type { Db } from '@berth/common/db';
import { listenRowCache, RowCache, rowKeyNamespace } from '@berth/common/row-cache';
import type { Container } from '../containers/types.js';
import type { Image } from '../images/types.js';
import type { Namespace } from '../namespaces/types.js';
import { rowChannels } from './migrations.js';

/** The rows Get answers from memory: ctr asks for the same namespace, image and container several times a command. */
export interface RowCaches {
  readonly namespaces: RowCache<Namespace>;
  readonly images: RowCache<Image>;
  /** Every image of a namespace, by name, by namespace: an unfiltered List (`ctr images ls`) from memory. */
  readonly imageLists: RowCache<readonly Image[]>;
  readonly containers: RowCache<Container>;
}

/**
 * Bounds of the caches. Containers carry their OCI spec (several KiB each); a node runs far fewer than this
 * many, and beyond it the least recently used are read from the database again.
 */
const sizes = { namespaces: 1_024, images: 16_384, imageLists: 64, containers: 4_096 } as const;

/**
 * The row caches, kept coherent with every writer of their tables (other replicas included) by the
 * notifications of migration 3. Resolves once all listen, with the caches and how to stop listening.
 */
export async function listenRowCaches(db: Db): Promise<{ rows: RowCaches; unlisten(): Promise<void> }> {
  const rows: RowCaches = {
    namespaces: new RowCache<Namespace>(sizes.namespaces),
    images: new RowCache<Image>(sizes.images),
    imageLists: new RowCache<readonly Image[]>(sizes.imageLists),
    containers: new RowCache<Container>(sizes.containers),
  };
  const unlistens: Array<() => Promise<void>> = [];
  const unlisten = async (): Promise<void> => {
    await Promise.all(unlistens.map((u) => u()));
  };
  try {
    unlistens.push(await listenRowCache(db, rowChannels.namespaces, rows.namespaces));
    unlistens.push(await listenRowCache(db, rowChannels.containers, rows.containers));
    // A changed image also changes its namespace's list.
    unlistens.push(
      await listenRowCache(db, rowChannels.images, {
        forget(key) {
          rows.images.forget(key);
          rows.imageLists.forget(rowKeyNamespace(key));
        },
        reset() {
          rows.images.reset();
          rows.imageLists.reset();
        },
      }),
    );
  } catch (e) {
    await unlisten();
    throw e;
  }
  return { rows, unlisten };
}
