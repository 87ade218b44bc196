import { notImplemented } from '@berth/common/errors';
import type { Descriptor } from '../apply/applier.js';
import type { ContentStore } from '../content/content-client.js';
import type { Mount } from '../mount/mount.js';

export interface DiffOptions {
  readonly mediaType: string;
  readonly ref: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** Computes the layer that turns `lower` into `upper` and writes it to content. */
export interface Differ {
  diff(
    ctx: import('@berth/common/context').RequestContext,
    lower: readonly Mount[],
    upper: readonly Mount[],
    opts: DiffOptions,
  ): Promise<Descriptor>;
}

export interface DifferDeps {
  readonly content: ContentStore;
  readonly tmpRoot: string;
}

export function createDiffer(_deps: DifferDeps): Differ {
  return {
    async diff() {
      throw notImplemented('diff: computing layers from mounts');
    },
  };
}
