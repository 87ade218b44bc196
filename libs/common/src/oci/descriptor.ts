import type { Descriptor as DescriptorPb } from '@berth/proto/containerd/types/descriptor';

/** An OCI platform (`os/architecture[/variant]`). */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string | undefined;
}

/** An OCI content descriptor: what a blob is, its digest and size. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly annotations?: Readonly<Record<string, string>> | undefined;
  /** Set on the entries of an index only. */
  readonly platform?: Platform | undefined;
}

/** The wire message (`containerd.types.Descriptor`): annotations always present, no platform. */
export function descriptorToProto(d: Descriptor): DescriptorPb {
  return { mediaType: d.mediaType, digest: d.digest, size: d.size, annotations: { ...d.annotations } };
}

/** The descriptor a wire message carries; an absent message is the empty descriptor, as proto3 reads it. */
export function descriptorFromProto(d: DescriptorPb | undefined): Descriptor & {
  readonly annotations: Readonly<Record<string, string>>;
} {
  return {
    mediaType: d?.mediaType ?? '',
    digest: d?.digest ?? '',
    size: d?.size ?? 0,
    annotations: d?.annotations ?? {},
  };
}
