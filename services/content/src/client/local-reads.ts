import type { RequestContext } from '@berth/common/context';
import { localCall } from '@berth/common/local-call';
import { nopLogger } from '@berth/common/log';
import type { ContentClient } from './content-client.js';

/** Reads a blob from a content store in this process: its chunks, as Content.Read would stream them. */
export type LocalRead = (ctx: RequestContext, digest: string) => Promise<AsyncIterable<Buffer> | readonly Buffer[]>;

/**
 * A ContentClient whose reads go to the content service in this process (all-in-one) instead of through the
 * node socket, and whose writes still go through `remote`. A layer's bytes then skip protobuf framing, HTTP/2
 * and a second pass through the event loop. Each step behaves as the RPC would (`localCall`): same context,
 * same errdefs codes; the reader still checks the digest of what it gets.
 */
export function withLocalReads(read: LocalRead, remote: ContentClient): ContentClient {
  return {
    async *read(callCtx, digest) {
      // Services in this process pass their request's context, logger included; a bare call context gets none.
      const ctx: RequestContext = 'log' in callCtx ? (callCtx as RequestContext) : { ...callCtx, log: nopLogger };
      const chunks = await localCall(ctx, (c) => read(c, digest));
      if (Symbol.iterator in chunks) {
        yield* chunks as readonly Buffer[];
        return;
      }
      const it = (chunks as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
      let done = false;
      try {
        for (;;) {
          const r = await localCall(ctx, () => it.next());
          if (r.done) {
            done = true;
            return;
          }
          yield r.value;
        }
      } finally {
        // A reader that stops early (a failed apply) releases the file at once.
        if (!done) await it.return?.().catch(() => undefined);
      }
    },
    write: (ctx, ref, data, commit, wait) => remote.write(ctx, ref, data, commit, wait),
    list: (ctx, filters) => remote.list(ctx, filters),
    updateLabels: (ctx, digest, labels) => remote.updateLabels(ctx, digest, labels),
    ingest: (ctx, source, opts) => remote.ingest(ctx, source, opts),
    close: () => remote.close(),
  };
}
