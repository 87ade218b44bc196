import { ContainerCreate, ContainerDelete, ContainerUpdate } from '@berth/proto/containerd/events/container';
import { ContentDelete } from '@berth/proto/containerd/events/content';
import { ImageCreate, ImageDelete, ImageUpdate } from '@berth/proto/containerd/events/image';
import { NamespaceCreate, NamespaceDelete, NamespaceUpdate } from '@berth/proto/containerd/events/namespace';
import { SnapshotCommit, SnapshotPrepare, SnapshotRemove } from '@berth/proto/containerd/events/snapshot';
import {
  TaskCheckpointed,
  TaskCreate,
  TaskDelete,
  TaskExecAdded,
  TaskExecStarted,
  TaskExit,
  TaskOOM,
  TaskPaused,
  TaskResumed,
  TaskStart,
} from '@berth/proto/containerd/events/task';
import type { MessageSpec } from './schema.js';

/** A payload type containerd's `typeurl` registry knows: its decoder and its struct layout. */
export interface PayloadType {
  readonly decode: (bytes: Uint8Array) => object;
  readonly spec: MessageSpec;
}

const s = (name: string, key: string, extra: { always?: boolean } = {}) => ({
  name,
  key,
  kind: 'string' as const,
  ...extra,
});
const u = (name: string, key: string) => ({ name, key, kind: 'uint' as const });
const t = (name: string, key: string) => ({ name, key, kind: 'time' as const });
const labels = { name: 'labels', key: 'labels', kind: 'labels' as const };
const containerId = s('container_id', 'containerId');

const mountSpec: MessageSpec = [
  s('type', 'type'),
  s('source', 'source'),
  s('target', 'target'),
  { name: 'options', key: 'options', kind: 'strings' },
];

const taskIO: MessageSpec = [
  s('stdin', 'stdin'),
  s('stdout', 'stdout'),
  s('stderr', 'stderr'),
  { name: 'terminal', key: 'terminal', kind: 'bool' },
];

/**
 * Type URL → payload, for every event containerd 1.6 publishes (containerd-api.md §4-5): gogo
 * `MessageName` without a prefix; the image events live in package `containerd.services.images.v1`.
 */
export const payloadTypes: ReadonlyMap<string, PayloadType> = new Map<string, PayloadType>([
  [
    'containerd.events.ContainerCreate',
    {
      decode: (b) => ContainerCreate.decode(b),
      spec: [
        s('id', 'id'),
        s('image', 'image'),
        {
          name: 'runtime',
          key: 'runtime',
          kind: 'message',
          nested: [s('name', 'name'), { name: 'options', key: 'options', kind: 'any' }],
        },
      ],
    },
  ],
  [
    'containerd.events.ContainerUpdate',
    {
      decode: (b) => ContainerUpdate.decode(b),
      spec: [s('id', 'id'), s('image', 'image'), labels, s('snapshot_key', 'snapshotKey')],
    },
  ],
  ['containerd.events.ContainerDelete', { decode: (b) => ContainerDelete.decode(b), spec: [s('id', 'id')] }],
  // `digest` has no omitempty in containerd's struct tag.
  [
    'containerd.events.ContentDelete',
    { decode: (b) => ContentDelete.decode(b), spec: [s('digest', 'digest', { always: true })] },
  ],
  [
    'containerd.services.images.v1.ImageCreate',
    { decode: (b) => ImageCreate.decode(b), spec: [s('name', 'name'), labels] },
  ],
  [
    'containerd.services.images.v1.ImageUpdate',
    { decode: (b) => ImageUpdate.decode(b), spec: [s('name', 'name'), labels] },
  ],
  ['containerd.services.images.v1.ImageDelete', { decode: (b) => ImageDelete.decode(b), spec: [s('name', 'name')] }],
  [
    'containerd.events.NamespaceCreate',
    { decode: (b) => NamespaceCreate.decode(b), spec: [s('name', 'name'), labels] },
  ],
  [
    'containerd.events.NamespaceUpdate',
    { decode: (b) => NamespaceUpdate.decode(b), spec: [s('name', 'name'), labels] },
  ],
  ['containerd.events.NamespaceDelete', { decode: (b) => NamespaceDelete.decode(b), spec: [s('name', 'name')] }],
  [
    'containerd.events.SnapshotPrepare',
    { decode: (b) => SnapshotPrepare.decode(b), spec: [s('key', 'key'), s('parent', 'parent')] },
  ],
  [
    'containerd.events.SnapshotCommit',
    { decode: (b) => SnapshotCommit.decode(b), spec: [s('key', 'key'), s('name', 'name')] },
  ],
  ['containerd.events.SnapshotRemove', { decode: (b) => SnapshotRemove.decode(b), spec: [s('key', 'key')] }],
  [
    'containerd.events.TaskCreate',
    {
      decode: (b) => TaskCreate.decode(b),
      spec: [
        containerId,
        s('bundle', 'bundle'),
        { name: 'rootfs', key: 'rootfs', kind: 'messages', nested: mountSpec },
        { name: 'io', key: 'io', kind: 'message', nested: taskIO },
        s('checkpoint', 'checkpoint'),
        u('pid', 'pid'),
      ],
    },
  ],
  ['containerd.events.TaskStart', { decode: (b) => TaskStart.decode(b), spec: [containerId, u('pid', 'pid')] }],
  [
    'containerd.events.TaskDelete',
    {
      decode: (b) => TaskDelete.decode(b),
      spec: [containerId, u('pid', 'pid'), u('exit_status', 'exitStatus'), t('exited_at', 'exitedAt'), s('id', 'id')],
    },
  ],
  [
    'containerd.events.TaskExit',
    {
      decode: (b) => TaskExit.decode(b),
      spec: [containerId, s('id', 'id'), u('pid', 'pid'), u('exit_status', 'exitStatus'), t('exited_at', 'exitedAt')],
    },
  ],
  ['containerd.events.TaskOOM', { decode: (b) => TaskOOM.decode(b), spec: [containerId] }],
  [
    'containerd.events.TaskExecAdded',
    { decode: (b) => TaskExecAdded.decode(b), spec: [containerId, s('exec_id', 'execId')] },
  ],
  [
    'containerd.events.TaskExecStarted',
    { decode: (b) => TaskExecStarted.decode(b), spec: [containerId, s('exec_id', 'execId'), u('pid', 'pid')] },
  ],
  ['containerd.events.TaskPaused', { decode: (b) => TaskPaused.decode(b), spec: [containerId] }],
  ['containerd.events.TaskResumed', { decode: (b) => TaskResumed.decode(b), spec: [containerId] }],
  [
    'containerd.events.TaskCheckpointed',
    { decode: (b) => TaskCheckpointed.decode(b), spec: [containerId, s('checkpoint', 'checkpoint')] },
  ],
]);
