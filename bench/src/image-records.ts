import type { Image } from '@berth/proto/containerd/services/images/v1/images';
import type { TinyImage } from '@berth/testing/tiny-image';

/** The namespace every record of the metadata bench lives in. */
export const benchNamespace = 'bench';

/** Image record `i` of the metadata bench: every one points at the same small image. */
export function imageRecord(
  i: number,
  image: TinyImage,
): Pick<Image, 'name' | 'labels'> & { target: NonNullable<Image['target']> } {
  return {
    name: `registry.test/bench/app${String(i).padStart(5, '0')}:v1`,
    labels: { group: String(i % 10), i: String(i) },
    target: { ...image.index, annotations: {} },
  };
}
