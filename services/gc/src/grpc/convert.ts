import type { CollectionStats as PbStats } from '@berth/proto/berth/internal/v1/gc';
import type { CollectionStats } from '../collector.js';

export function statsToPb(s: CollectionStats): PbStats {
  return {
    startedAtUnixMs: s.startedAt.getTime(),
    elapsedMs: s.elapsedMs,
    pauseMs: s.pauseMs,
    changePointMs: s.changePointMs,
    markMs: s.phases.markMs,
    remarkMs: s.phases.remarkMs,
    sweepMs: s.phases.sweepMs,
    contentMs: s.phases.contentMs,
    snapshotsMs: s.phases.snapshotsMs,
    marked: s.marked,
    changed: s.changed,
    leasesRemoved: s.removed.leases,
    imagesRemoved: s.removed.images,
    contentRemoved: s.removed.blobs,
    ingestsRemoved: s.removed.ingests,
    snapshotsRemoved: s.removed.snapshots,
    blobsDeleted: s.content.blobsDeleted,
    bytesFreed: s.content.bytesFreed,
    ingestDirsDeleted: s.content.ingestsDeleted,
    uploadsAborted: s.content.uploadsAborted,
    backendFailures: s.content.failures,
    snapshotNodes: [...s.snapshots.nodes],
    snapshotNodesSkipped: [...s.snapshots.skipped],
  };
}

export function statsFromPb(p: PbStats): CollectionStats {
  return {
    startedAt: new Date(p.startedAtUnixMs),
    elapsedMs: p.elapsedMs,
    changePointMs: p.changePointMs,
    pauseMs: p.pauseMs,
    phases: {
      markMs: p.markMs,
      remarkMs: p.remarkMs,
      sweepMs: p.sweepMs,
      contentMs: p.contentMs,
      snapshotsMs: p.snapshotsMs,
    },
    marked: p.marked,
    changed: p.changed,
    removed: {
      leases: p.leasesRemoved,
      images: p.imagesRemoved,
      blobs: p.contentRemoved,
      ingests: p.ingestsRemoved,
      snapshots: p.snapshotsRemoved,
    },
    content: {
      blobsDeleted: p.blobsDeleted,
      bytesFreed: p.bytesFreed,
      ingestsDeleted: p.ingestDirsDeleted,
      uploadsAborted: p.uploadsAborted,
      failures: p.backendFailures,
    },
    snapshots: { nodes: p.snapshotNodes, skipped: p.snapshotNodesSkipped },
  };
}
