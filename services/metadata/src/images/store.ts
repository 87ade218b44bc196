import { requireNamespace } from '@berth/common/context';
import type { Db, Queryable } from '@berth/common/db';
import { alreadyExists, invalidArgument, isAlreadyExists, notFound } from '@berth/common/errors';
import { ALWAYS, type FieldAdaptor } from '@berth/common/filters';
import { holdCollectionLockShared } from '@berth/common/gc-lock';
import { withoutEmpty } from '@berth/common/labels';
import { digestProblem } from '@berth/common/oci';
import { type RowCache, rowKey } from '@berth/common/row-cache';
import {
  deleteImage,
  insertImage,
  listImages,
  listImagesNarrowedBy,
  selectImage,
  updateImage,
} from '../db/images-repo.js';
import { compileFilters } from '../filters.js';
import { sortedMap, validateLabelMap } from '../label-maps.js';
import { enqueueEvent } from '../outbox.js';
import type { Descriptor, Image, ImageEvents, ImageInput, ImageStore } from './types.js';

export interface ImageStoreDeps {
  readonly db: Db;
  readonly events: ImageEvents;
  /** Called after a commit that enqueued events. */
  readonly onCommit: () => void;
  /** Image rows by `namespace/name`, kept coherent by the caller (listenRowCache); writes here forget theirs. */
  readonly rows: RowCache<Image>;
  /** Each namespace's images by name, kept coherent by the caller like `rows`; writes here forget theirs. */
  readonly lists: RowCache<readonly Image[]>;
}

/** A namespace with more images than this is listed from the database every time, to bound the memory held. */
const maxCachedList = 50_000;

/** The fields containerd's image filters see (`metadata/adaptors.go` adaptImage), without allocating per field. */
export function imageAdaptor(image: Image): FieldAdaptor {
  return {
    field(path) {
      switch (path[0]) {
        case 'name':
          return image.name || undefined;
        case 'target':
          if (path[1] === 'digest') return image.target.digest || undefined;
          if (path[1] === 'mediatype') return image.target.mediaType || undefined;
          return undefined;
        case 'labels':
          return mapField(image.labels, path);
        case 'annotations':
          return mapField(image.target.annotations, path);
        default:
          return undefined;
      }
    },
  };
}

/** containerd's checkMap: an empty map has no fields; the rest of the path, joined by `.`, is the key. */
function mapField(m: Readonly<Record<string, string>>, path: readonly string[]): string | undefined {
  const key = path.slice(1).join('.');
  return Object.hasOwn(m, key) ? m[key] : undefined;
}

/** containerd's `validateImage`: only the fields that are stored are checked. */
function validateImage(image: ImageInput): void {
  if (image.name === '') throw invalidArgument('image name must not be empty');
  validateLabelMap('image.Labels', image.labels);
  const problem = digestProblem(image.target.digest);
  if (problem) throw invalidArgument(`Target.Digest ${JSON.stringify(image.target.digest)} invalid: ${problem}`);
  if (image.target.size <= 0) throw invalidArgument('Target.Size must be greater than zero');
  if (image.target.mediaType === '') throw invalidArgument('Target.MediaType must be set');
}

/** The record as stored: labels and annotations with empty values dropped, as containerd's writeMap does. */
function normalized(image: ImageInput): ImageInput {
  return {
    name: image.name,
    labels: sortedMap(withoutEmpty(image.labels)),
    target: { ...image.target, annotations: sortedMap(withoutEmpty(image.target.annotations)) },
  };
}

/** Applies an update mask the way containerd's imageStore.Update does. */
function applyMask(current: Image, req: ImageInput, paths: readonly string[]): ImageInput {
  if (paths.length === 0) return req;
  let labels: Record<string, string> = { ...current.labels };
  let target: Descriptor = current.target;
  let annotations: Record<string, string> = { ...current.target.annotations };
  for (const path of paths) {
    if (path.startsWith('labels.')) {
      const key = path.slice('labels.'.length);
      labels[key] = req.labels[key] ?? '';
      continue;
    }
    if (path.startsWith('annotations.')) {
      const key = path.slice('annotations.'.length);
      annotations[key] = req.target.annotations[key] ?? '';
      continue;
    }
    switch (path) {
      case 'labels':
        labels = { ...req.labels };
        break;
      case 'target':
        // The target is replaced as a unit: digest, size and media type only make sense together.
        target = req.target;
        annotations = { ...req.target.annotations };
        break;
      case 'annotations':
        annotations = { ...req.target.annotations };
        break;
      default:
        throw invalidArgument(`cannot update ${JSON.stringify(path)} field on image ${JSON.stringify(current.name)}`);
    }
  }
  return { name: current.name, labels, target: { ...target, annotations } };
}

export function createImageStore(deps: ImageStoreDeps): ImageStore {
  const { db, rows, lists } = deps;

  /** A transaction that writes the image `name`: its cached row and its namespace's list are forgotten around it. */
  const writeRow = <T>(ns: string, name: string, fn: (tx: Queryable) => Promise<T>): Promise<T> =>
    rows.writing(rowKey(ns, name), () =>
      lists.writing(ns, () =>
        db.transaction(async (tx) => {
          // An image is a gc root: its target and labels must not change between a collection's mark and sweep.
          await holdCollectionLockShared(tx);
          return fn(tx);
        }),
      ),
    );

  /** Every image of `ns`, from the database, kept in memory for the next List. */
  const loadAll = async (ns: string): Promise<readonly Image[]> => {
    const epoch = lists.epoch();
    const images = await listImages(db, ns);
    if (images.length <= maxCachedList) lists.set(ns, images, epoch);
    return images;
  };

  return {
    async get(ctx, name) {
      const ns = requireNamespace(ctx);
      const image = await rows.read(rowKey(ns, name), () => selectImage(db, ns, name));
      if (!image) throw notFound(`image ${JSON.stringify(name)}`);
      return image;
    },

    async list(ctx, filters) {
      const ns = requireNamespace(ctx);
      const filter = compileFilters(filters);
      // A filter an index answers reads only its images, unless the whole namespace is in memory already.
      const candidates = lists.get(ns) ?? (await listImagesNarrowedBy(db, ns, filter)) ?? (await loadAll(ns));
      return filter === ALWAYS ? [...candidates] : candidates.filter((image) => filter.match(imageAdaptor(image)));
    },

    async create(ctx, input) {
      const ns = requireNamespace(ctx);
      validateImage(input);
      const image = normalized(input);
      const now = new Date();
      const created: Image = { ...image, createdAt: now, updatedAt: now };
      try {
        await writeRow(ns, image.name, async (tx) => {
          await insertImage(tx, ns, image, now);
          await enqueueEvent(tx, ns, deps.events.created(created));
        });
      } catch (e) {
        if (isAlreadyExists(e)) throw alreadyExists(`image ${JSON.stringify(image.name)}`, e);
        throw e;
      }
      deps.onCommit();
      return created;
    },

    async update(ctx, input, paths) {
      const ns = requireNamespace(ctx);
      if (input.name === '') throw invalidArgument('image name is required for update');
      const updated = await writeRow(ns, input.name, async (tx) => {
        const current = await selectImage(tx, ns, input.name, true);
        if (!current) throw notFound(`image ${JSON.stringify(input.name)}`);
        const next = applyMask(current, input, paths);
        validateImage(next);
        const image = normalized(next);
        const result: Image = { ...image, createdAt: current.createdAt, updatedAt: new Date() };
        await updateImage(tx, ns, image, result.updatedAt);
        await enqueueEvent(tx, ns, deps.events.updated(result));
        return result;
      });
      deps.onCommit();
      return updated;
    },

    async delete(ctx, name) {
      const ns = requireNamespace(ctx);
      await writeRow(ns, name, async (tx) => {
        if (!(await deleteImage(tx, ns, name))) throw notFound(`image ${JSON.stringify(name)}`);
        await enqueueEvent(tx, ns, deps.events.deleted(name));
      });
      deps.onCommit();
    },
  };
}
