import type { Info as ProtoInfo, Status as ProtoStatus } from '@berth/proto/containerd/services/content/v1/content';
import type { Info, IngestStatus } from '../content/types.js';

/** Domain → wire; proto types stop in this folder. */
export function infoToProto(i: Info): ProtoInfo {
  return { digest: i.digest, size: i.size, createdAt: i.createdAt, updatedAt: i.updatedAt, labels: { ...i.labels } };
}

export function statusToProto(s: IngestStatus): ProtoStatus {
  return {
    ref: s.ref,
    offset: s.offset,
    total: s.total,
    expected: s.expected,
    startedAt: s.startedAt,
    updatedAt: s.updatedAt,
  };
}
