import { invalidArgument } from '@berth/common/errors';
import { handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type { DiffServer } from '@berth/proto/containerd/services/diff/v1/diff';
import type { Applier } from '../apply/applier.js';
import type { Differ } from '../compare/differ.js';

/** `containerd.services.diff.v1.Diff`: validate, call, convert. */
export function createDiffServer(applier: Applier, differ: Differ, log: Logger): DiffServer {
  const h = handlers(log);
  return {
    apply: h.unary(async (req, ctx) => {
      const d = req.diff;
      if (!d) throw invalidArgument('diff descriptor must be set');
      const applied = await applier.apply(ctx, { mediaType: d.mediaType, digest: d.digest, size: d.size }, req.mounts);
      return { applied: { ...applied, annotations: {} } };
    }),
    diff: h.unary(async (req, ctx) => {
      const desc = await differ.diff(ctx, req.left, req.right, {
        mediaType: req.mediaType,
        ref: req.ref,
        labels: req.labels,
      });
      return { diff: { ...desc, annotations: {} } };
    }),
  };
}
