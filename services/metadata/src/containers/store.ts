import { requireNamespace } from '@berth/common/context';
import type { Db, Queryable } from '@berth/common/db';
import { alreadyExists, invalidArgument, isAlreadyExists, notFound, wrap } from '@berth/common/errors';
import { adaptorFromObject } from '@berth/common/filters';
import { holdCollectionLockShared } from '@berth/common/gc-lock';
import { validateIdentifier } from '@berth/common/identifiers';
import { withoutEmpty } from '@berth/common/labels';
import { type RowCache, rowKey } from '@berth/common/row-cache';
import {
  anyContainerIn,
  deleteContainer,
  insertContainer,
  listContainers,
  selectContainer,
  updateContainer,
} from '../db/containers-repo.js';
import { compileFilters } from '../filters.js';
import { sortedMap, validateLabelMap } from '../label-maps.js';
import { enqueueEvent } from '../outbox.js';
import type { AnyValue, Container, ContainerEvents, ContainerInput, ContainerStore } from './types.js';

export interface ContainerStoreDeps {
  readonly db: Db;
  readonly events: ContainerEvents;
  /** Called after a commit that enqueued events. */
  readonly onCommit: () => void;
  /** Container rows by `namespace/id`, kept coherent by the caller (listenRowCache); writes here forget theirs. */
  readonly rows: RowCache<Container>;
}

/** The fields containerd's container filters see (`metadata/adaptors.go` adaptContainer). */
export function containerAdaptor(c: Container): ReturnType<typeof adaptorFromObject> {
  return adaptorFromObject({ id: c.id, 'runtime.name': c.runtime.name, image: c.image, labels: c.labels });
}

/** containerd's `validateContainer`. */
function validateContainer(c: ContainerInput): void {
  try {
    validateIdentifier(c.id);
  } catch (e) {
    throw wrap(e, 'container.ID');
  }
  if (Object.hasOwn(c.extensions, '')) throw invalidArgument('container.Extension keys must not be zero-length');
  validateLabelMap('containers.Labels', c.labels);
  if (c.runtime.name === '') throw invalidArgument('container.Runtime.Name must be set');
  if (!c.spec) throw invalidArgument('container.Spec must be set');
  if (c.snapshotKey !== '' && c.snapshotter === '') {
    throw invalidArgument('container.Snapshotter must be set if container.SnapshotKey is set');
  }
}

/** Paths replaced by an update without a mask; snapshotter and runtime are immutable. */
const fullReplace = ['labels', 'spec', 'extensions', 'image', 'snapshotkey'] as const;

function applyMask(current: Container, req: ContainerInput, mask: readonly string[]): ContainerInput {
  let paths = mask;
  if (paths.length === 0) {
    paths = fullReplace;
    if (current.snapshotter !== req.snapshotter) throw invalidArgument('container.Snapshotter field is immutable');
    if (current.runtime.name !== req.runtime.name) throw invalidArgument('container.Runtime.Name field is immutable');
  }
  let labels: Record<string, string> = { ...current.labels };
  let extensions: Record<string, AnyValue> = { ...current.extensions };
  let { spec, image, snapshotKey } = current;
  for (const path of paths) {
    if (path.startsWith('labels.')) {
      const key = path.slice('labels.'.length);
      labels[key] = req.labels[key] ?? '';
      continue;
    }
    if (path.startsWith('extensions.')) {
      const key = path.slice('extensions.'.length);
      const value = req.extensions[key];
      // containerd stores an empty Any here; removing the key is what a client naming an absent one means.
      if (value === undefined) delete extensions[key];
      else extensions[key] = value;
      continue;
    }
    switch (path) {
      case 'labels':
        labels = { ...req.labels };
        break;
      case 'spec':
        spec = req.spec;
        break;
      case 'extensions':
        extensions = { ...req.extensions };
        break;
      case 'image':
        image = req.image;
        break;
      case 'snapshotkey':
        snapshotKey = req.snapshotKey;
        break;
      default:
        throw invalidArgument(`cannot update ${JSON.stringify(path)} field on ${JSON.stringify(current.id)}`);
    }
  }
  return { ...current, labels, extensions, spec, image, snapshotKey };
}

export function createContainerStore(deps: ContainerStoreDeps): ContainerStore {
  const { db, rows } = deps;

  /** A transaction that writes the container `id`: its cached row is forgotten around it. */
  const writeRow = <T>(ns: string, id: string, fn: (tx: Queryable) => Promise<T>): Promise<T> =>
    rows.writing(rowKey(ns, id), () =>
      db.transaction(async (tx) => {
        // A container is a gc root: its creation must not land between a collection's mark and sweep.
        await holdCollectionLockShared(tx);
        return fn(tx);
      }),
    );

  const stored = (c: ContainerInput, createdAt: Date, updatedAt: Date): Container => ({
    ...c,
    labels: sortedMap(withoutEmpty(c.labels)),
    extensions: sortedMap(c.extensions),
    createdAt,
    updatedAt,
  });

  return {
    async get(ctx, id) {
      const ns = requireNamespace(ctx);
      const c = await rows.read(rowKey(ns, id), () => selectContainer(db, ns, id));
      if (!c) throw notFound(`container ${JSON.stringify(id)} in namespace ${JSON.stringify(ns)}`);
      return c;
    },

    async list(ctx, filters) {
      const ns = requireNamespace(ctx);
      const filter = compileFilters(filters);
      return (await listContainers(db, ns)).filter((c) => filter.match(containerAdaptor(c)));
    },

    async create(ctx, input) {
      const ns = requireNamespace(ctx);
      try {
        validateContainer(input);
      } catch (e) {
        throw wrap(e, 'create container failed validation');
      }
      const now = new Date();
      const created = stored(input, now, now);
      try {
        await writeRow(ns, input.id, async (tx) => {
          await insertContainer(tx, ns, created, now, now);
          await enqueueEvent(tx, ns, deps.events.created(created));
        });
      } catch (e) {
        if (isAlreadyExists(e)) throw alreadyExists(`container ${JSON.stringify(input.id)}`, e);
        throw e;
      }
      deps.onCommit();
      return created;
    },

    async update(ctx, input, paths) {
      const ns = requireNamespace(ctx);
      if (input.id === '') throw invalidArgument('must specify a container id');
      const result = await writeRow(ns, input.id, async (tx) => {
        const current = await selectContainer(tx, ns, input.id, true);
        if (!current) {
          // containerd words a miss differently when the namespace never held a container (no bucket).
          if (!(await anyContainerIn(tx, ns))) {
            throw notFound(`cannot update container ${JSON.stringify(input.id)} in namespace ${JSON.stringify(ns)}`);
          }
          throw notFound(`container ${JSON.stringify(input.id)}`);
        }
        const next = applyMask(current, input, paths);
        try {
          validateContainer(next);
        } catch (e) {
          throw wrap(e, 'update failed validation');
        }
        const updated = stored(next, current.createdAt, new Date());
        await updateContainer(tx, ns, updated, updated.createdAt, updated.updatedAt);
        await enqueueEvent(tx, ns, deps.events.updated(updated));
        return updated;
      });
      deps.onCommit();
      return result;
    },

    async delete(ctx, id) {
      const ns = requireNamespace(ctx);
      await writeRow(ns, id, async (tx) => {
        if (!(await deleteContainer(tx, ns, id))) {
          if (!(await anyContainerIn(tx, ns))) {
            throw notFound(`cannot delete container ${JSON.stringify(id)} in namespace ${JSON.stringify(ns)}`);
          }
          throw notFound(`container ${id}`);
        }
        await enqueueEvent(tx, ns, deps.events.deleted(id));
      });
      deps.onCommit();
    },
  };
}
