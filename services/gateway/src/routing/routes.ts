import { EventsReplayService } from '@berth/proto/berth/internal/v1/events';
import { GCService } from '@berth/proto/berth/internal/v1/gc';
import { ContainersService } from '@berth/proto/containerd/services/containers/v1/containers';
import { ContentService } from '@berth/proto/containerd/services/content/v1/content';
import { DiffService } from '@berth/proto/containerd/services/diff/v1/diff';
import { EventsService } from '@berth/proto/containerd/services/events/v1/events';
import { ImagesService } from '@berth/proto/containerd/services/images/v1/images';
import { LeasesService } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesService } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import { SnapshotsService } from '@berth/proto/containerd/services/snapshots/v1/snapshots';
import { TasksService } from '@berth/proto/containerd/services/tasks/v1/tasks';
import type * as grpc from '@grpc/grpc-js';

/** Which Berth service owns which containerd gRPC services. */
export const ownedServices = {
  metadata: [NamespacesService, ImagesService, ContainersService, LeasesService],
  content: [ContentService],
  snapshots: [SnapshotsService],
  diff: [DiffService],
  tasks: [TasksService],
  events: [EventsService, EventsReplayService],
  gc: [GCService],
} as const satisfies Record<string, readonly grpc.ServiceDefinition[]>;

export type BerthServiceName = keyof typeof ownedServices;
export const berthServiceNames = Object.keys(ownedServices) as BerthServiceName[];

/** The gRPC service name of a definition, e.g. `containerd.services.content.v1.Content`. */
export function serviceNameOf(def: grpc.ServiceDefinition): string {
  const first = Object.values(def)[0];
  if (!first) throw new Error('empty service definition');
  return first.path.split('/')[1] ?? '';
}
