import type { RequestContext } from '@berth/common/context';
import { ErrorCode, invalidArgument, ServiceError } from '@berth/common/errors';
import { type Mount, overlayUpper, withTempMount } from '@berth/common/mount';
import type { Descriptor } from '@berth/common/oci';
import { adoptStaged, adoptTarget } from '../ahead/adopt.js';
import type { UnpackAhead } from '../ahead/unpack-ahead.js';
import type { Extract } from './extract.js';
import { compressionOf } from './media-types.js';

export interface Applier {
  /**
   * Streams the layer `desc` from content, decompresses it and applies it onto `mounts`. Returns the
   * uncompressed layer (`…layer.v1.tar`, digest = diffID, size). not_implemented for unknown media
   * types; invalid_argument for layers that are malformed or would write outside the mounts.
   */
  apply(ctx: RequestContext, desc: Descriptor, mounts: readonly Mount[]): Promise<Descriptor>;
}

export interface ApplierDeps {
  readonly extract: Extract;
  /** Where temporary mount points are made. */
  readonly tmpRoot: string;
  /** Layers extracted while the ones below them are applied (overlay upper dirs only). */
  readonly ahead?: UnpackAhead;
}

export function createApplier(deps: ApplierDeps): Applier {
  return {
    async apply(ctx, desc, mounts) {
      if (mounts.length === 0) throw invalidArgument('mounts must not be empty');
      compressionOf(desc.mediaType);
      const running = deps.ahead?.active(ctx.namespace ?? '');
      try {
        return await applyLayer(ctx, desc, mounts);
      } finally {
        running?.(ctx.signal.aborted);
      }
    },
  };

  async function applyLayer(ctx: RequestContext, desc: Descriptor, mounts: readonly Mount[]): Promise<Descriptor> {
    const upper = overlayUpper(mounts);
    // Any layer, the bottom one (a bind mount) included, tells which layers come next.
    deps.ahead?.notice(ctx, desc);
    const target = deps.ahead && adoptTarget(mounts);
    if (target && deps.ahead) {
      const pending = deps.ahead.take(ctx, desc);
      const staged = await waitFor(ctx, pending).catch((e: unknown) => {
        void pending.then((s) => s?.release());
        throw e;
      });
      if (staged) {
        try {
          if (await adoptStaged(staged, target)) return staged.diff;
        } finally {
          await staged.release();
        }
      }
    }
    if (upper) {
      return (await deps.extract(ctx, desc, { root: upper.upper, whiteouts: 'overlay', parents: upper.lowers })).diff;
    }
    return withTempMount(
      mounts,
      deps.tmpRoot,
      async (dir) => (await deps.extract(ctx, desc, { root: dir, whiteouts: 'delete', parents: [] })).diff,
    );
  }
}

/** `p`, or undefined as soon as the call is given up (the staged extraction goes on for nobody, then expires). */
async function waitFor<T>(ctx: RequestContext, p: Promise<T | undefined>): Promise<T | undefined> {
  const canceled = (): ServiceError => {
    const r: unknown = ctx.signal.reason;
    return r instanceof ServiceError
      ? r
      : new ServiceError(ErrorCode.Canceled, 'apply: context canceled', { cause: r });
  };
  if (ctx.signal.aborted) throw canceled();
  let onAbort = (): void => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(canceled());
    ctx.signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([p, aborted]);
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
  }
}
