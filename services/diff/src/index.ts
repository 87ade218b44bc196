import type { Logger } from '@berth/common/log';
import { removeStaleMounts } from '@berth/common/mount';
import type { ServiceModule } from '@berth/common/service';
import type { IngestObserver } from '@berth/content';
import { type LocalRead, remoteContent, withLocalReads } from '@berth/content/client';
import { DiffService } from '@berth/proto/containerd/services/diff/v1/diff';
import { createUnpackAhead, type UnpackAhead } from './ahead/unpack-ahead.js';
import { createApplier } from './apply/applier.js';
import { createThreadedExtract } from './apply/extract-thread.js';
import { createDiffer } from './compare/differ.js';
import { createDiffServer } from './grpc/diff-server.js';

export type { Applier } from './apply/applier.js';

export interface DiffDeps {
  readonly log: Logger;
  /** The content service (`Content.Read`/`Write`): the node socket in all-in-one, its own address when apart. */
  readonly contentAddress: string;
  /** Content in this process (all-in-one): layers are read from it directly; writes still use the address. */
  readonly localRead?: LocalRead;
  /** Where temporary mount points are created (runtime state). */
  readonly tmpRoot: string;
  /**
   * Unpack-ahead's staging directory (see ahead/unpack-ahead.ts): on the filesystem of the snapshots, so a
   * staged layer moves into its snapshot by rename. Unset: every layer is extracted by its own Apply.
   */
  readonly aheadRoot?: string;
  /** Layers extracted ahead at once (default 2). */
  readonly aheadConcurrency?: number;
  /** Content in this process: its Writes, so a layer is extracted while it downloads. */
  readonly observeIngests?: (observer: IngestObserver) => () => void;
  /**
   * The node's snapshots in this process: each call they serve is reported as it begins (the function returned
   * called as it ends). Unpack-ahead counts them as calls of the namespace's pull: the Commit and Prepare
   * between two Applies keep its extractions, however slow they are.
   */
  readonly observeSnapshotCalls?: (observer: (namespace: string) => () => void) => () => void;
  /** How long a stage of Apply or Diff may make no progress before the call fails; 0 = the default, 60 s. */
  readonly stallMs?: number;
}

/** Builds the node's differ (containerd's `walking` differ): stateless, needs the node's mounts. */
export async function createDiffModule(deps: DiffDeps): Promise<ServiceModule> {
  const log = deps.log.child({ service: 'diff' });
  const stale = await removeStaleMounts(deps.tmpRoot);
  if (stale.length > 0) log.warn('removed temporary mounts left by an earlier process', { mounts: stale });
  const remote = remoteContent(deps.contentAddress);
  const content = deps.localRead ? withLocalReads(deps.localRead, remote) : remote;
  const stallMs = deps.stallMs ?? 0;
  const extract = createThreadedExtract({ content, stallMs });
  const ahead: UnpackAhead | undefined = deps.aheadRoot
    ? await createUnpackAhead({
        content,
        extract,
        root: deps.aheadRoot,
        log,
        ...(deps.aheadConcurrency ? { concurrency: deps.aheadConcurrency } : {}),
      })
    : undefined;
  const unsubscribe = ahead && deps.observeIngests?.(ahead);
  const unobserve = ahead && deps.observeSnapshotCalls?.((ns) => ahead.active(ns));
  const applier = createApplier({ extract, tmpRoot: deps.tmpRoot, ...(ahead ? { ahead } : {}) });
  const differ = createDiffer({ content, tmpRoot: deps.tmpRoot, stallMs });
  return {
    name: 'diff',
    grpc: [{ definition: DiffService, implementation: createDiffServer(applier, differ, log) }],
    plugins: [
      { type: 'io.containerd.differ.v1', id: 'walking', requires: ['io.containerd.metadata.v1'] },
      { type: 'io.containerd.grpc.v1', id: 'diff', requires: ['io.containerd.differ.v1'] },
    ],
    async close() {
      unsubscribe?.();
      unobserve?.();
      await ahead?.close();
      content.close();
    },
  };
}
