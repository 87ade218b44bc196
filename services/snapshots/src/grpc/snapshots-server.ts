import { invalidArgument } from '@berth/common/errors';
import { type HandlerOptions, handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import {
  type ListSnapshotsResponse,
  type Info as ProtoInfo,
  Kind as ProtoKind,
  type SnapshotsServer,
} from '@berth/proto/containerd/services/snapshots/v1/snapshots';
import type { Mount as ProtoMount } from '@berth/proto/containerd/types/mount';
import type { Info, Kind, Mount, Snapshotter } from '../snapshots/types.js';

const kindToProto: Record<Kind, ProtoKind> = {
  view: ProtoKind.VIEW,
  active: ProtoKind.ACTIVE,
  committed: ProtoKind.COMMITTED,
};

export function infoToProto(i: Info): ProtoInfo {
  return {
    name: i.name,
    parent: i.parent,
    kind: kindToProto[i.kind],
    createdAt: i.createdAt,
    updatedAt: i.updatedAt,
    labels: { ...i.labels },
  };
}

const mountsToProto = (ms: readonly Mount[]): ProtoMount[] =>
  ms.map((m) => ({ type: m.type, source: m.source, target: '', options: [...m.options] }));

/** containerd sends list results in blocks of this many infos. */
const listBlock = 100;

/** `containerd.services.snapshots.v1.Snapshots` over the node's snapshotters: validate, call, convert. */
export function createSnapshotsServer(
  snapshotters: ReadonlyMap<string, Snapshotter>,
  log: Logger,
  opts: HandlerOptions = {},
): SnapshotsServer {
  const h = handlers(log, opts);
  const get = (name: string): Snapshotter => {
    if (name === '') throw invalidArgument('snapshotter argument missing');
    const sn = snapshotters.get(name);
    if (!sn) throw invalidArgument(`snapshotter not loaded: ${name}`);
    return sn;
  };
  return {
    prepare: h.unary(async (req, ctx) => ({
      mounts: mountsToProto(await get(req.snapshotter).prepare(ctx, req.key, req.parent, req.labels)),
    })),
    view: h.unary(async (req, ctx) => ({
      mounts: mountsToProto(await get(req.snapshotter).view(ctx, req.key, req.parent, req.labels)),
    })),
    mounts: h.unary(async (req, ctx) => ({ mounts: mountsToProto(await get(req.snapshotter).mounts(ctx, req.key)) })),
    commit: h.unary(async (req, ctx) => {
      await get(req.snapshotter).commit(ctx, req.name, req.key, req.labels);
      return {};
    }),
    remove: h.unary(async (req, ctx) => {
      await get(req.snapshotter).remove(ctx, req.key);
      return {};
    }),
    stat: h.unary(async (req, ctx) => ({ info: infoToProto(await get(req.snapshotter).stat(ctx, req.key)) })),
    update: h.unary(async (req, ctx) => {
      const sn = get(req.snapshotter);
      if (!req.info) throw invalidArgument('info must be set');
      return { info: infoToProto(await sn.update(ctx, req.info, req.updateMask ?? [])) };
    }),
    list: h.serverStream(async function* (req, ctx): AsyncGenerator<ListSnapshotsResponse> {
      const infos = await get(req.snapshotter).list(ctx, req.filters);
      for (let i = 0; i < infos.length; i += listBlock) {
        yield { info: infos.slice(i, i + listBlock).map(infoToProto) };
      }
    }),
    usage: h.unary(async (req, ctx) => await get(req.snapshotter).usage(ctx, req.key)),
    cleanup: h.unary(async (req, ctx) => {
      await get(req.snapshotter).cleanup(ctx);
      return {};
    }),
  };
}
