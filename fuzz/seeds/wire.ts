import { EventsReplayService } from '@berth/proto/berth/internal/v1/events';
import { ContainersService } from '@berth/proto/containerd/services/containers/v1/containers';
import { ContentService } from '@berth/proto/containerd/services/content/v1/content';
import { DiffService } from '@berth/proto/containerd/services/diff/v1/diff';
import { EventsService } from '@berth/proto/containerd/services/events/v1/events';
import { ImagesService } from '@berth/proto/containerd/services/images/v1/images';
import { IntrospectionService } from '@berth/proto/containerd/services/introspection/v1/introspection';
import { LeasesService } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesService } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import { SnapshotsService } from '@berth/proto/containerd/services/snapshots/v1/snapshots';
import { TasksService } from '@berth/proto/containerd/services/tasks/v1/tasks';
import { VersionService } from '@berth/proto/containerd/services/version/v1/version';
import { HealthService } from '@berth/proto/grpc/health/v1/health';

/**
 * Valid requests for every method of every service berthd serves, the seeds of the wire fuzzer. They are the
 * shapes the test suite sends (namespace `fuzz`, the overlayfs snapshotter, real-looking digests), built as
 * objects and encoded with each method's own serializer.
 */

export interface Method {
  readonly service: string;
  readonly name: string;
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  /** Valid encoded requests (a client stream sends several). */
  readonly seeds: readonly Buffer[];
  /** Whether bytes decode as this method's request: most mutants should reach the handler, not the decoder. */
  decodes(b: Buffer): boolean;
}

interface AnyMethodDef {
  readonly path: string;
  readonly requestStream: boolean;
  readonly responseStream: boolean;
  readonly requestSerialize: (v: never) => Buffer;
  readonly requestDeserialize: (b: Buffer) => unknown;
}

export const services: Readonly<Record<string, Readonly<Record<string, AnyMethodDef>>>> = {
  Containers: ContainersService,
  Content: ContentService,
  Diff: DiffService,
  Events: EventsService,
  EventsReplay: EventsReplayService,
  Health: HealthService,
  Images: ImagesService,
  Introspection: IntrospectionService,
  Leases: LeasesService,
  Namespaces: NamespacesService,
  Snapshots: SnapshotsService,
  Tasks: TasksService,
  Version: VersionService,
};

const digest = (c: string): string => `sha256:${c.repeat(64)}`;
const descriptor = {
  mediaType: 'application/vnd.oci.image.index.v1+json',
  digest: digest('a'),
  size: 1234,
  annotations: { 'org.opencontainers.image.ref.name': '1' },
};
const anyEvent = {
  typeUrl: 'containerd.events.NamespaceCreate',
  value: Buffer.from([0x0a, 0x04, 0x66, 0x75, 0x7a, 0x7a]),
};

/** Values for top-level fields by name: the ids and keys the suite's requests carry. */
const byField: Readonly<Record<string, unknown>> = {
  name: 'fuzz-name',
  id: 'fuzz-id',
  key: 'fuzz-key',
  parent: '',
  ref: 'fuzz-ref',
  digest: digest('b'),
  snapshotter: 'overlayfs',
  containerId: 'fuzz-no-container',
  execId: 'fuzz-exec',
  filter: 'name==fuzz',
  filters: ['name~=fuzz', 'labels.a==b'],
  topic: '/fuzz/topic',
  namespace: 'fuzz',
  service: 'containerd.services.version.v1.Version',
  labels: { a: 'b' },
  updateMask: ['labels.a'],
  offset: 0n,
  size: 0n,
  total: 0n,
  signal: 0,
  all: false,
  sync: false,
  expected: '',
};

/** Nested messages of the requests that create or update things. */
const byMethod: Readonly<Record<string, readonly Record<string, unknown>[]>> = {
  'Namespaces/Create': [{ namespace: { name: 'fuzz-n', labels: { team: 'fuzz' } } }],
  'Namespaces/Update': [{ namespace: { name: 'fuzz', labels: { x: 'y' } }, updateMask: ['labels.x'] }],
  'Images/Create': [{ image: { name: 'fuzz/img:1', labels: { a: 'b' }, target: descriptor } }],
  'Images/Update': [{ image: { name: 'fuzz/img:1', labels: { a: 'c' }, target: descriptor }, updateMask: [] }],
  'Containers/Create': [
    {
      container: {
        id: 'fuzz-c',
        labels: {},
        image: 'fuzz/img:1',
        runtime: { name: 'io.containerd.runc.v2' },
        snapshotter: 'overlayfs',
        snapshotKey: 'fuzz-c',
        extensions: {},
      },
    },
  ],
  'Containers/Update': [{ container: { id: 'fuzz-c', labels: { a: 'b' }, extensions: {} }, updateMask: ['labels'] }],
  'Leases/Create': [{ id: 'fuzz-l', labels: { a: 'b' } }],
  'Leases/AddResource': [{ id: 'fuzz-l', resource: { id: digest('c'), type: 'content' } }],
  'Leases/DeleteResource': [{ id: 'fuzz-l', resource: { id: digest('c'), type: 'content' } }],
  'Content/Update': [{ info: { digest: digest('b'), size: 0n, labels: { a: 'b' } }, updateMask: ['labels.a'] }],
  'Content/Write': [
    { action: 0, ref: 'fuzz-ref', total: 5n, expected: '', offset: 0n, data: Buffer.alloc(0), labels: {} },
    { action: 1, ref: '', total: 0n, expected: '', offset: 0n, data: Buffer.from('hello'), labels: {} },
    {
      action: 2,
      ref: '',
      total: 5n,
      expected: 'sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824',
      offset: 5n,
      data: Buffer.alloc(0),
      labels: {},
    },
  ],
  'Snapshots/Prepare': [{ snapshotter: 'overlayfs', key: 'fuzz-snap', parent: '', labels: {} }],
  'Snapshots/Commit': [{ snapshotter: 'overlayfs', name: 'fuzz-snap-c', key: 'fuzz-snap', labels: {} }],
  'Snapshots/Update': [
    {
      snapshotter: 'overlayfs',
      info: { name: 'fuzz-snap', parent: '', kind: 1, labels: { a: 'b' } },
      updateMask: ['labels.a'],
    },
  ],
  'Diff/Apply': [
    {
      diff: { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: digest('d'), size: 10n, annotations: {} },
      mounts: [],
      payloads: {},
    },
  ],
  'Diff/Diff': [
    { left: [], right: [], mediaType: 'application/vnd.oci.image.layer.v1.tar', ref: 'fuzz-diff', labels: {} },
  ],
  'Events/Publish': [{ topic: '/fuzz/topic', event: anyEvent }],
  'Events/Forward': [
    { envelope: { timestamp: new Date(0), namespace: 'fuzz', topic: '/fuzz/topic', event: anyEvent } },
  ],
  'Tasks/Create': [
    { containerId: 'fuzz-no-container', rootfs: [], stdin: '', stdout: '', stderr: '', terminal: false },
  ],
  'Tasks/Exec': [
    { containerId: 'fuzz-no-container', execId: 'e1', stdin: '', stdout: '', stderr: '', terminal: false },
  ],
};

/** Every method with its seeds: the method's own valid requests, or its default message with fields filled by name. */
export function methods(): Method[] {
  const out: Method[] = [];
  for (const [service, def] of Object.entries(services)) {
    for (const m of Object.values(def)) {
      const name = m.path.slice(m.path.lastIndexOf('/') + 1);
      const defaults = m.requestDeserialize(Buffer.alloc(0)) as Record<string, unknown>;
      const filled: Record<string, unknown> = { ...defaults };
      for (const k of Object.keys(defaults)) {
        const v = byField[k];
        if (v !== undefined && typeof v === typeof defaults[k] && Array.isArray(v) === Array.isArray(defaults[k]))
          filled[k] = v;
      }
      const encode = (o: Record<string, unknown>): Buffer => m.requestSerialize({ ...filled, ...o } as never);
      const seeds = (byMethod[`${service}/${name}`] ?? [{}]).map(encode);
      const decodes = (b: Buffer): boolean => {
        try {
          m.requestDeserialize(b);
          return true;
        } catch {
          return false;
        }
      };
      out.push({
        service,
        name,
        path: m.path,
        requestStream: m.requestStream,
        responseStream: m.responseStream,
        seeds,
        decodes,
      });
    }
  }
  return out;
}
