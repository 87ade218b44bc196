import { ErrorCode, ServiceError } from '@berth/common/errors';
import { handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type { ImagesServer } from '@berth/proto/containerd/services/images/v1/images';
import type { GarbageCollector } from '../gc.js';
import type { ImageStore } from '../images/types.js';
import { imageFromPb, imageToPb } from './convert.js';

/** `containerd.services.images.v1.Images` over an ImageStore: validate, call, convert. */
export function createImagesServer(store: ImageStore, gc: GarbageCollector, log: Logger): ImagesServer {
  const h = handlers(log);
  // containerd's service answers these with a bare status message, without the errdefs suffix.
  const nameRequired = (): ServiceError => new ServiceError(ErrorCode.InvalidArgument, 'Image.Name required');
  return {
    get: h.unary(async (req, ctx) => ({ image: imageToPb(await store.get(ctx, req.name)) })),
    list: h.unary(async (req, ctx) => ({ images: (await store.list(ctx, req.filters)).map(imageToPb) })),
    create: h.unary(async (req, ctx) => {
      if (!req.image?.name) throw nameRequired();
      return { image: imageToPb(await store.create(ctx, imageFromPb(req.image))) };
    }),
    update: h.unary(async (req, ctx) => {
      if (!req.image?.name) throw nameRequired();
      return { image: imageToPb(await store.update(ctx, imageFromPb(req.image), req.updateMask ?? [])) };
    }),
    delete: h.unary(async (req, ctx) => {
      await store.delete(ctx, req.name);
      if (req.sync) await gc.collect(ctx);
      return {};
    }),
  };
}
