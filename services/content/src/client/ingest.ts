/**
 * Content.Write, the bidi ingest protocol, from the client side (containerd-api.md §6.2):
 * STAT (first message carries the ref) → the server says how much of the ingest it already has →
 * WRITE chunks from that offset → COMMIT with size and digest, which the server verifies.
 * AlreadyExists on the first message means the blob is there already; Unavailable means another writer
 * holds the ref (retried, as containerd's OpenWriter does).
 */
import { once } from 'node:events';
import { ErrorCode, isAlreadyExists, isUnavailable, ServiceError } from '@berth/common/errors';
import type { Descriptor } from '@berth/common/oci';
import {
  type ContentClient as ContentGrpcClient,
  WriteAction,
  type WriteContentRequest,
  type WriteContentResponse,
} from '@berth/proto/containerd/services/content/v1/content';
import { type CallContext, openWriteCall } from './write-call.js';

/** Where Content is reached: a node connection (`@berth/client`'s NodeClient) or anything holding its client. */
export interface ContentNode {
  readonly content: ContentGrpcClient;
}

/** Where the bytes come from: opened at an offset; `start` 0 means it could not seek (the ingest restarts). */
export interface IngestSource {
  open(
    offset: number,
    signal: AbortSignal,
  ): Promise<{ start: number; body: AsyncIterable<Uint8Array> | Iterable<Uint8Array> }>;
}

export interface IngestOptions {
  /** Ingest key, e.g. `layer-sha256:…` (containerd's refKey), so a later pull of the same blob resumes it. */
  readonly ref: string;
  readonly desc: Descriptor;
  /** Labels set on the blob at commit (gc references, distribution source). */
  readonly labels?: Readonly<Record<string, string>>;
  /** Called with the bytes the server has acknowledged (resumed offset first). */
  readonly onProgress?: (offset: number, resumedFrom: number) => void;
  /** How many times a broken source is reopened (from the offset reached) before the ingest fails. Default 3. */
  readonly sourceRetries?: number;
}

export type IngestResult =
  | { readonly state: 'exists' }
  | { readonly state: 'written'; readonly resumedFrom: number; readonly fetched: number };

/** Messages are at most this large (ctr sends ≤ 1 MiB; servers accept 16 MiB). */
const chunkBytes = 1024 * 1024;
const lockedRetries = 16;

export async function ingest(
  node: ContentNode,
  ctx: CallContext,
  source: IngestSource,
  opts: IngestOptions,
): Promise<IngestResult> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await ingestOnce(node, ctx, source, opts);
    } catch (e) {
      if (isAlreadyExists(e)) return { state: 'exists' };
      // Another writer holds the ref (a concurrent pull of the same blob): wait, then see what it left.
      if (isUnavailable(e) && attempt < lockedRetries && !ctx.signal.aborted) {
        await sleep(Math.min(2 ** attempt * 10, 1_000), ctx.signal);
        continue;
      }
      throw e;
    }
  }
}

async function ingestOnce(
  node: ContentNode,
  ctx: CallContext,
  source: IngestSource,
  opts: IngestOptions,
): Promise<IngestResult> {
  const { desc } = opts;
  const w = openWriteCall(node.content, ctx);
  const { call, responses } = w;
  const next = (): Promise<WriteContentResponse> =>
    w.next(() => new ServiceError(ErrorCode.Unknown, `write ${opts.ref}: stream closed by the server`));
  const base = { ref: '', total: 0, expected: '', offset: 0, data: Buffer.alloc(0), labels: {} };
  try {
    call.write({ ...base, action: WriteAction.STAT, ref: opts.ref, total: desc.size, expected: desc.digest });
    const status = await next();
    const resumedFrom = status.offset > desc.size ? 0 : status.offset;
    opts.onProgress?.(resumedFrom, resumedFrom);

    // Responses to WRITEs are read as they come (so the server never blocks on sending them); the one to
    // COMMIT ends the exchange.
    let acked = resumedFrom;
    const committed = (async (): Promise<WriteContentResponse> => {
      for (;;) {
        const r = await next();
        if (r.action === WriteAction.COMMIT) return r;
        acked = r.offset;
        opts.onProgress?.(acked, resumedFrom);
      }
    })();
    // Surfaces a failure of the stream while this side is still busy reading the source.
    let streamError: unknown;
    committed.catch((e: unknown) => {
      streamError = e;
    });

    let offset = resumedFrom;
    let fetched = 0;
    const send = async (req: WriteContentRequest): Promise<void> => {
      if (streamError !== undefined) throw streamError;
      if (!call.write(req)) await Promise.race([once(call, 'drain'), committed]);
    };
    const pending: Buffer[] = [];
    let pendingBytes = 0;
    const flush = async (): Promise<void> => {
      if (pendingBytes === 0) return;
      const data = pending.length === 1 ? (pending[0] ?? Buffer.alloc(0)) : Buffer.concat(pending, pendingBytes);
      pending.length = 0;
      pendingBytes = 0;
      await send({ ...base, action: WriteAction.WRITE, offset, data });
      offset += data.length;
      fetched += data.length;
    };
    let retries = opts.sourceRetries ?? 3;
    while (offset < desc.size) {
      try {
        const { start, body } = await source.open(offset, ctx.signal);
        // A source that cannot seek starts over: WRITE at offset 0 makes the server truncate the ingest.
        offset = start;
        for await (const chunk of body) {
          let c = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
          if (offset + pendingBytes + c.length > desc.size) {
            throw new ServiceError(
              ErrorCode.DataLoss,
              `${desc.digest}: source sent more than the ${desc.size} bytes the descriptor says`,
            );
          }
          while (c.length > 0) {
            const take = Math.min(c.length, chunkBytes - pendingBytes);
            pending.push(c.subarray(0, take));
            pendingBytes += take;
            c = c.subarray(take);
            if (pendingBytes === chunkBytes) await flush();
          }
        }
        await flush();
        if (offset < desc.size)
          throw new SourceError(`${desc.digest}: source ended at ${offset} of ${desc.size} bytes`);
      } catch (e) {
        if (ctx.signal.aborted || streamError !== undefined || e instanceof ServiceError) throw e;
        // A broken download: what arrived is good up to where it broke. Hand it to the ingest, then reopen
        // the source from there — or, out of retries, close the stream cleanly so the server keeps the
        // partial ingest for the next pull to resume.
        await flush();
        if (retries-- <= 0) {
          call.end();
          // containerd ends the call once it has read to the end of our side; don't hang on a server that doesn't.
          await Promise.race([committed.catch(() => undefined), sleep(5_000, ctx.signal)]);
          throw e;
        }
      }
    }
    await send({
      ...base,
      action: WriteAction.COMMIT,
      total: desc.size,
      expected: desc.digest,
      offset,
      labels: { ...opts.labels },
    });
    const done = await committed;
    call.end();
    // containerd repeats its last response before closing; read to the end so the call completes cleanly.
    void drain(responses);
    if (done.offset !== desc.size || (done.digest !== '' && done.digest !== desc.digest)) {
      throw new ServiceError(
        ErrorCode.Unknown,
        `commit ${opts.ref}: server reports ${done.offset} bytes, digest ${done.digest}; want ${desc.size}, ${desc.digest}`,
      );
    }
    opts.onProgress?.(desc.size, resumedFrom);
    return { state: 'written', resumedFrom, fetched };
  } catch (e) {
    call.cancel();
    throw e;
  } finally {
    w.release();
  }
}

async function drain(it: AsyncIterator<unknown>): Promise<void> {
  try {
    while (!(await it.next()).done);
  } catch {
    // The exchange already succeeded; how the server closes the stream does not matter.
  }
}

/** A failure of the byte source (connection reset, short body), as opposed to the content service. */
class SourceError extends Error {
  override readonly name = 'SourceError';
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
