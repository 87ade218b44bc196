import type { RequestContext } from '@berth/common/context';
import { ErrorCode, ServiceError } from '@berth/common/errors';
import { stallGuard } from '@berth/common/stall';
import {
  WriteAction,
  type WriteContentRequest,
  type WriteContentResponse,
} from '@berth/proto/containerd/services/content/v1/content';
import { type Digest, parseDigest } from '../content/digest.js';
import type { ContentStore } from '../content/types.js';

/**
 * containerd's Write protocol (`contentserver.go`): the first message names the ref and opens (or resumes)
 * its writer; every message gets one response carrying the offset after it and, for WRITE and COMMIT, the
 * digest of the bytes so far. STAT reports progress; a WRITE at offset 0 over existing bytes restarts the
 * ingest; a non-zero offset must equal the current one; COMMIT ends the stream.
 *
 * A client that goes away (or sends nothing for `stallMs`: deadline_exceeded) ends the session at once: the
 * ref's lock is released and the bytes written so far stay in the ingest, which a later Write resumes.
 */
export async function* writeSession(
  store: ContentStore,
  requests: AsyncIterable<WriteContentRequest>,
  ctx: RequestContext,
  stallMs = 0,
): AsyncIterable<WriteContentResponse> {
  const it = requests[Symbol.asyncIterator]();
  const guard = stallGuard(ctx, 'content write', stallMs);
  try {
    yield* session(store, it, ctx, guard);
  } finally {
    guard.close();
  }
}

async function* session(
  store: ContentStore,
  it: AsyncIterator<WriteContentRequest>,
  ctx: RequestContext,
  guard: ReturnType<typeof stallGuard>,
): AsyncIterable<WriteContentResponse> {
  // The request stream does not end when the client vanishes: every read of it goes through the guard.
  const receive = (): Promise<IteratorResult<WriteContentRequest>> => guard.wait(it.next(), 'client stream');
  let next = await receive();
  if (next.done) return;
  let req = next.value;
  const ref = req.ref;
  if (ref === '') throw new ServiceError(ErrorCode.InvalidArgument, 'first message must have a reference');
  let total = req.total;
  let expected = expectedDigest(req.expected);

  const writer = await store.writer(ctx, { ref, total, expected });
  // Opening the writer just looked the first message's expected digest up (already_exists when stored).
  let checked = expected;
  try {
    for (;;) {
      const ws = writer.status();
      const res: WriteContentResponse = { action: req.action, offset: ws.offset, total: 0, digest: '' };
      if (req.expected !== '') {
        expected = expectedDigest(req.expected);
        const fresh = expected !== checked;
        checked = undefined;
        if (expected !== undefined && fresh && (await exists(store, ctx, expected))) {
          // Removed while the writer still holds the ref: a writer waiting for it must not get this ingest.
          await writer.abort().catch(() => undefined);
          throw new ServiceError(ErrorCode.AlreadyExists, `blob with expected digest ${expected} exists`);
        }
      }
      if (req.total > 0) total = req.total;

      switch (req.action) {
        case WriteAction.STAT:
          res.digest = writer.digest();
          res.startedAt = ws.startedAt;
          res.updatedAt = ws.updatedAt;
          res.total = total;
          break;
        case WriteAction.WRITE:
        case WriteAction.COMMIT:
          if (req.offset > 0 && req.offset !== ws.offset) {
            throw new ServiceError(
              ErrorCode.OutOfRange,
              `write @${req.offset} must occur at current offset ${ws.offset}`,
            );
          }
          if (req.offset === 0 && ws.offset > 0) {
            await writer.truncate();
            res.offset = 0;
          }
          if (req.data.length > 0) {
            await guard.wait(writer.write(req.data), 'ingest write');
            res.offset += req.data.length;
          }
          if (req.action === WriteAction.COMMIT) await writer.commit(total, expected, req.labels);
          res.digest = writer.digest();
          break;
        default:
          throw new ServiceError(ErrorCode.InvalidArgument, `unknown write action ${String(req.action)}`);
      }
      yield res;
      if (req.action === WriteAction.COMMIT) return;
      next = await receive();
      if (next.done) return;
      req = next.value;
    }
  } finally {
    await writer.close();
  }
}

function expectedDigest(s: string): Digest | undefined {
  if (s === '') return undefined;
  return parseDigest(s, (problem) => `expected digest ${JSON.stringify(s)}: ${problem}: invalid argument`);
}

async function exists(store: ContentStore, ctx: RequestContext, digest: Digest): Promise<boolean> {
  try {
    await store.info(ctx, digest);
    return true;
  } catch (e) {
    if (e instanceof ServiceError && e.code === ErrorCode.NotFound) return false;
    throw e;
  }
}
