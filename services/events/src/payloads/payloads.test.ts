import { ContainerCreate, ContainerUpdate } from '@berth/proto/containerd/events/container';
import { ContentDelete } from '@berth/proto/containerd/events/content';
import { ImageCreate } from '@berth/proto/containerd/events/image';
import { NamespaceCreate } from '@berth/proto/containerd/events/namespace';
import { TaskCreate, TaskDelete, TaskExit } from '@berth/proto/containerd/events/task';
import { describe, expect, it } from 'vitest';
import { ctrEventLine, envelopeAdaptor, goTimeString, payloadJson } from './index.js';

const any = (typeUrl: string, value: Uint8Array) => ({ typeUrl, value });

describe('payload JSON as ctr prints it (Go encoding/json of containerd structs)', () => {
  it('omits empty fields, sorts label keys, escapes like Go', () => {
    const v = NamespaceCreate.encode({ name: 'ns1', labels: { z: '1', a: '<&>' } }).finish();
    expect(payloadJson(any('containerd.events.NamespaceCreate', v))).toBe(
      '{"name":"ns1","labels":{"a":"\\u003c\\u0026\\u003e","z":"1"}}',
    );
    const empty = NamespaceCreate.encode({ name: 'ns1', labels: {} }).finish();
    expect(payloadJson(any('containerd.events.NamespaceCreate', empty))).toBe('{"name":"ns1"}');
  });

  it('keeps fields without omitempty and times as RFC 3339 (zero time when unset)', () => {
    expect(payloadJson(any('containerd.events.ContentDelete', ContentDelete.encode({ digest: '' }).finish()))).toBe(
      '{"digest":""}',
    );
    const exit = TaskExit.encode({
      containerId: 'c1',
      id: 'c1',
      pid: 42,
      exitStatus: 3,
      exitedAt: new Date('2024-05-01T10:00:00.120Z'),
    }).finish();
    expect(payloadJson(any('containerd.events.TaskExit', exit))).toBe(
      '{"container_id":"c1","id":"c1","pid":42,"exit_status":3,"exited_at":"2024-05-01T10:00:00.12Z"}',
    );
    const del = TaskDelete.encode({ containerId: 'c1', pid: 0, exitStatus: 0, id: '' }).finish();
    expect(payloadJson(any('containerd.events.TaskDelete', del))).toBe(
      '{"container_id":"c1","exited_at":"0001-01-01T00:00:00Z"}',
    );
  });

  it('prints nested messages, mounts and Any values', () => {
    const create = TaskCreate.encode({
      containerId: 'c1',
      bundle: '/run/b/c1',
      rootfs: [{ type: 'overlay', source: 'overlay', target: '', options: ['lowerdir=/a'] }],
      io: { stdin: '', stdout: '/fifo/out', stderr: '', terminal: true },
      checkpoint: '',
      pid: 7,
    }).finish();
    expect(payloadJson(any('containerd.events.TaskCreate', create))).toBe(
      '{"container_id":"c1","bundle":"/run/b/c1","rootfs":[{"type":"overlay","source":"overlay","options":["lowerdir=/a"]}],"io":{"stdout":"/fifo/out","terminal":true},"pid":7}',
    );
    const cc = ContainerCreate.encode({
      id: 'c1',
      image: 'docker.io/library/busybox:latest',
      runtime: {
        name: 'io.containerd.runc.v2',
        options: { typeUrl: 'containerd.runc.v1.Options', value: Buffer.from([1, 2]) },
      },
    }).finish();
    expect(payloadJson(any('containerd.events.ContainerCreate', cc))).toBe(
      '{"id":"c1","image":"docker.io/library/busybox:latest","runtime":{"name":"io.containerd.runc.v2","options":{"type_url":"containerd.runc.v1.Options","value":"AQI="}}}',
    );
  });

  it('cannot decode unknown type URLs (ctr skips those)', () => {
    expect(payloadJson(any('containerd.events.Nope', new Uint8Array()))).toBeUndefined();
    expect(
      ctrEventLine({ timestamp: new Date(), namespace: 'n', topic: '/a', event: any('x.Y', new Uint8Array()) }),
    ).toBeUndefined();
  });

  it('formats the ctr events line with Go time.Time.String()', () => {
    expect(goTimeString(new Date('2024-05-01T10:00:00.000Z'))).toBe('2024-05-01 10:00:00 +0000 UTC');
    expect(goTimeString(new Date('2024-05-01T10:00:00.250Z'))).toBe('2024-05-01 10:00:00.25 +0000 UTC');
    const v = ImageCreate.encode({ name: 'docker.io/library/redis:7', labels: {} }).finish();
    expect(
      ctrEventLine({
        timestamp: new Date('2024-05-01T10:00:00.123Z'),
        namespace: 'default',
        topic: '/images/create',
        event: any('containerd.services.images.v1.ImageCreate', v),
      }),
    ).toBe('2024-05-01 10:00:00.123 +0000 UTC default /images/create {"name":"docker.io/library/redis:7"}');
  });
});

describe('envelope fields for filters (containerd Envelope.Field + generated Field methods)', () => {
  const update = ContainerUpdate.encode({ id: 'c1', image: '', labels: { 'a.b': 'x' }, snapshotKey: 'k' }).finish();
  const a = envelopeAdaptor({
    timestamp: new Date(),
    namespace: 'default',
    topic: '/containers/update',
    event: any('containerd.events.ContainerUpdate', update),
  });

  it('answers namespace, topic and event.<field> by proto field name', () => {
    expect(a.field(['namespace'])).toBe('default');
    expect(a.field(['topic'])).toBe('/containers/update');
    expect(a.field(['event', 'id'])).toBe('c1');
    expect(a.field(['event', 'snapshot_key'])).toBe('k');
    expect(a.field(['event', 'labels', 'a', 'b'])).toBe('x');
  });

  it('treats empty strings, numbers and unknown fields as absent', () => {
    expect(a.field(['event', 'image'])).toBeUndefined();
    expect(a.field(['event', 'nope'])).toBeUndefined();
    expect(a.field(['timestamp'])).toBeUndefined();
    const exit = TaskExit.encode({ containerId: 'c1', id: '', pid: 42, exitStatus: 1 }).finish();
    const e = envelopeAdaptor({
      timestamp: new Date(),
      namespace: 'n',
      topic: '/tasks/exit',
      event: any('containerd.events.TaskExit', exit),
    });
    expect(e.field(['event', 'pid'])).toBeUndefined();
    expect(e.field(['event', 'container_id'])).toBe('c1');
  });

  it('reads nested messages and booleans', () => {
    const create = TaskCreate.encode({
      containerId: 'c1',
      bundle: '',
      rootfs: [],
      io: { stdin: '', stdout: 'o', stderr: '', terminal: false },
      checkpoint: '',
      pid: 1,
    }).finish();
    const e = envelopeAdaptor({
      timestamp: new Date(),
      namespace: 'n',
      topic: '/tasks/create',
      event: any('containerd.events.TaskCreate', create),
    });
    expect(e.field(['event', 'io', 'stdout'])).toBe('o');
    expect(e.field(['event', 'io', 'terminal'])).toBe('false');
  });
});
