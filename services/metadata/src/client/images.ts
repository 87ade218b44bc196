import type { CallContext } from '@berth/common/context';
import { invoke } from '@berth/common/grpc-client';
import { type Descriptor, descriptorToProto } from '@berth/common/oci';
import type {
  GetImageResponse,
  Image as ImagePb,
  ImagesClient as ImagesGrpcClient,
  ListImagesResponse,
} from '@berth/proto/containerd/services/images/v1/images';
import { imageFromPb } from '../grpc/convert.js';
import type { ImageInput } from '../images/types.js';

/** An image record as the Images service returns it (timestamps as the server sent them). */
export interface ImageRecord extends ImageInput {
  readonly createdAt: Date | undefined;
  readonly updatedAt: Date | undefined;
}

/** What a client sends to create or update an image: the target's annotations may be left out. */
export interface ImageFields {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly target: Descriptor;
}

/** containerd's Images API, as a client of a node uses it; each call rejects as the RPC does. */
export interface ImagesClient {
  /** not_found when absent. */
  get(ctx: CallContext, name: string): Promise<ImageRecord>;
  /** Images matching any of `filters` (containerd filter syntax). */
  list(ctx: CallContext, filters: readonly string[]): Promise<ImageRecord[]>;
  /** already_exists when the name is taken. */
  create(ctx: CallContext, image: ImageFields): Promise<void>;
  /** Applies `paths` (`labels`, `labels.<key>`, `target`, …), or replaces the whole record when there are none. */
  update(ctx: CallContext, image: ImageFields, paths?: readonly string[]): Promise<void>;
  /** With `sync`, the server's garbage collection has run when it answers. */
  delete(ctx: CallContext, name: string, sync?: boolean): Promise<void>;
}

const recordFromPb = (i: ImagePb | undefined): ImageRecord => ({
  ...imageFromPb(i),
  createdAt: i?.createdAt,
  updatedAt: i?.updatedAt,
});

const fieldsToPb = (i: ImageFields): ImagePb => ({
  name: i.name,
  labels: { ...i.labels },
  target: descriptorToProto(i.target),
});

/** An ImagesClient over a gRPC client (one sharing a node connection). */
export function imagesOver(client: ImagesGrpcClient): ImagesClient {
  return {
    async get(ctx, name) {
      const res = await invoke<GetImageResponse>((md, o, cb) => client.get({ name }, md, o, cb), ctx);
      if (!res.image) throw new Error(`image ${name}: empty response`);
      return recordFromPb(res.image);
    },
    async list(ctx, filters) {
      const res = await invoke<ListImagesResponse>(
        (md, o, cb) => client.list({ filters: [...filters] }, md, o, cb),
        ctx,
      );
      return res.images.map(recordFromPb);
    },
    async create(ctx, image) {
      await invoke((md, o, cb) => client.create({ image: fieldsToPb(image) }, md, o, cb), ctx);
    },
    async update(ctx, image, paths = []) {
      await invoke((md, o, cb) => client.update({ image: fieldsToPb(image), updateMask: [...paths] }, md, o, cb), ctx);
    },
    async delete(ctx, name, sync = false) {
      await invoke((md, o, cb) => client.delete({ name, sync }, md, o, cb), ctx);
    },
  };
}
