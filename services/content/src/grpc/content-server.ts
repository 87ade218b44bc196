import { ErrorCode, ServiceError, wrap } from '@berth/common/errors';
import { handlers, type Responses } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type {
  ContentServer,
  ListContentResponse,
  ReadContentResponse,
} from '@berth/proto/containerd/services/content/v1/content';
import { parseDigest } from '../content/digest.js';
import type { ContentStore } from '../content/types.js';
import { infoToProto, statusToProto } from './convert.js';
import { writeSession } from './write-session.js';

/** Read responses: each chunk with the offset it starts at; chunks already in memory stay a plain array. */
function withOffsets(chunks: AsyncIterable<Buffer> | readonly Buffer[], start: number): Responses<ReadContentResponse> {
  let offset = start;
  const at = (data: Buffer): ReadContentResponse => {
    const r = { offset, data };
    offset += data.length;
    return r;
  };
  if (Symbol.iterator in chunks) return chunks.map(at);
  return (async function* () {
    for await (const data of chunks) yield at(data);
  })();
}

/** containerd sends List results in blocks of this many infos. */
const listBlock = 100;

/** `containerd.services.content.v1.Content` over a ContentStore: validate, call, convert. */
export function createContentServer(store: ContentStore, log: Logger, opts: { stallMs?: number } = {}): ContentServer {
  const h = handlers(log, opts);
  return {
    info: h.unary(async (req, ctx) => ({ info: infoToProto(await store.info(ctx, parseDigest(req.digest))) })),

    update: h.unary(async (req, ctx) => {
      const info = req.info;
      if (!info) throw new ServiceError(ErrorCode.InvalidArgument, 'info must be set');
      const digest = parseDigest(info.digest);
      return { info: infoToProto(await store.update(ctx, { digest, labels: info.labels }, req.updateMask ?? [])) };
    }),

    list: h.serverStream(async function* (req, ctx): AsyncIterable<ListContentResponse> {
      const infos = await store.list(ctx, req.filters);
      for (let i = 0; i < infos.length; i += listBlock) {
        yield { info: infos.slice(i, i + listBlock).map(infoToProto) };
      }
    }),

    delete: h.unary(async (req, ctx) => {
      await store.delete(
        ctx,
        parseDigest(req.digest, (problem) => problem),
      );
      return {};
    }),

    read: h.serverStream(async (req, ctx) => {
      const digest = parseDigest(req.digest, (problem) => `${req.digest}: ${problem}`);
      const start = Math.max(0, req.offset);
      return withOffsets(await store.read(ctx, digest, start, req.size), start);
    }),

    status: h.unary(async (req, ctx) => {
      try {
        return { status: statusToProto(await store.status(ctx, req.ref)) };
      } catch (e) {
        throw wrap(e, `could not get status for ref ${JSON.stringify(req.ref)}`);
      }
    }),

    listStatuses: h.unary(async (req, ctx) => ({
      statuses: (await store.listStatuses(ctx, req.filters)).map(statusToProto),
    })),

    write: h.bidi((requests, ctx) => writeSession(store, requests, ctx, opts.stallMs)),

    abort: h.unary(async (req, ctx) => {
      await store.abort(ctx, req.ref);
      return {};
    }),
  };
}
