import { descriptorFromProto, descriptorToProto } from '@berth/common/oci';
import type { Container as ContainerPb } from '@berth/proto/containerd/services/containers/v1/containers';
import type { Image as ImagePb } from '@berth/proto/containerd/services/images/v1/images';
import type { Lease as LeasePb } from '@berth/proto/containerd/services/leases/v1/leases';
import type { Any } from '@berth/proto/google/protobuf/any';
import type { AnyValue, Container, ContainerInput } from '../containers/types.js';
import type { Image, ImageInput } from '../images/types.js';
import type { Lease } from '../leases/types.js';

/** Proto types stop here: conversions between the wire messages and the domain records. */

const anyToPb = (a: AnyValue): Any => ({
  typeUrl: a.typeUrl,
  value: Buffer.from(a.value.buffer, a.value.byteOffset, a.value.byteLength),
});
const anyFromPb = (a: Any): AnyValue => ({ typeUrl: a.typeUrl, value: a.value });

export function imageToPb(i: Image): ImagePb {
  return {
    name: i.name,
    labels: { ...i.labels },
    target: descriptorToProto(i.target),
    createdAt: i.createdAt,
    updatedAt: i.updatedAt,
  };
}

export function imageFromPb(i: ImagePb | undefined): ImageInput {
  return {
    name: i?.name ?? '',
    labels: i?.labels ?? {},
    target: descriptorFromProto(i?.target),
  };
}

export function containerToPb(c: Container): ContainerPb {
  return {
    id: c.id,
    labels: { ...c.labels },
    image: c.image,
    runtime: { name: c.runtime.name, options: c.runtime.options ? anyToPb(c.runtime.options) : undefined },
    spec: c.spec ? anyToPb(c.spec) : undefined,
    snapshotter: c.snapshotter,
    snapshotKey: c.snapshotKey,
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
    extensions: Object.fromEntries(Object.entries(c.extensions).map(([k, v]) => [k, anyToPb(v)])),
  };
}

export function containerFromPb(c: ContainerPb | undefined): ContainerInput {
  return {
    id: c?.id ?? '',
    labels: c?.labels ?? {},
    image: c?.image ?? '',
    runtime: {
      name: c?.runtime?.name ?? '',
      options: c?.runtime?.options ? anyFromPb(c.runtime.options) : undefined,
    },
    spec: c?.spec ? anyFromPb(c.spec) : undefined,
    snapshotter: c?.snapshotter ?? '',
    snapshotKey: c?.snapshotKey ?? '',
    extensions: Object.fromEntries(Object.entries(c?.extensions ?? {}).map(([k, v]) => [k, anyFromPb(v)])),
  };
}

export function leaseToPb(l: Lease): LeasePb {
  return { id: l.id, createdAt: l.createdAt, labels: { ...l.labels } };
}
