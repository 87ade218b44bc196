import type { Db } from '@berth/common/db';
import { migrate } from '@berth/common/db';
import type { ServiceError } from '@berth/common/errors';
import { ContainerCreate, ContainerUpdate } from '@berth/proto/containerd/events/container';
import { ImageCreate, ImageUpdate } from '@berth/proto/containerd/events/image';
import type { Container } from '@berth/proto/containerd/services/containers/v1/containers';
import type { Image } from '@berth/proto/containerd/services/images/v1/images';
import { rejection } from '@berth/testing/async-checks';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrations } from '../src/db/migrations.js';
import { type Harness, startHarness } from './harness.js';

export interface OpenedDb {
  readonly db: Db;
  drop(): Promise<void>;
}

const dgst = (c: string): string => `sha256:${c.repeat(64).slice(0, 64)}`;
const indexType = 'application/vnd.oci.image.index.v1+json';
const goZeroTime = new Date(Date.UTC(1, 0, 1) - 0);

function image(name: string, extra: Partial<Image> = {}): Image {
  return {
    name,
    labels: {},
    target: { mediaType: indexType, digest: dgst('a'), size: 1234, annotations: {} },
    // ctr sends Go's zero time here; the server must overwrite it.
    createdAt: goZeroTime,
    updatedAt: goZeroTime,
    ...extra,
  };
}

const specJson = Buffer.from(JSON.stringify({ ociVersion: '1.0.2-dev', process: { args: ['sh'] } }));

function container(id: string, extra: Partial<Container> = {}): Container {
  return {
    id,
    labels: { 'io.containerd.image.config.stop-signal': 'SIGTERM' },
    image: 'docker.io/library/busybox:latest',
    runtime: {
      name: 'io.containerd.runc.v2',
      options: { typeUrl: 'containerd.runc.v1.Options', value: Buffer.alloc(0) },
    },
    spec: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Spec', value: specJson },
    snapshotter: 'overlayfs',
    snapshotKey: id,
    extensions: {},
    ...extra,
  };
}

/**
 * The metadata service's contract, run against every database backend: the four containerd services over
 * gRPC, their errors and messages, and the events they publish.
 */
export function metadataSuite(backend: string, open: () => Promise<OpenedDb>): void {
  describe(`metadata service on ${backend}`, () => {
    let opened: OpenedDb;
    let h: Harness;
    beforeAll(async () => {
      opened = await open();
      h = await startHarness(opened.db, { outboxPollMs: 50 });
    });
    afterAll(async () => {
      await h?.close();
      await opened?.drop();
    });

    const createImage = (ns: string, img: Image): Promise<Image | undefined> =>
      h.call(ns, (md, o, cb) => h.images.create({ image: img }, md, o, cb)).then((r) => r.image);
    const getImage = (ns: string, name: string): Promise<Image | undefined> =>
      h.call(ns, (md, o, cb) => h.images.get({ name }, md, o, cb)).then((r) => r.image);
    const listImages = (ns: string, filters: string[] = []): Promise<Image[]> =>
      h.call(ns, (md, o, cb) => h.images.list({ filters }, md, o, cb)).then((r) => r.images);
    const updateImage = (ns: string, img: Image, updateMask?: string[]): Promise<Image | undefined> =>
      h.call(ns, (md, o, cb) => h.images.update({ image: img, updateMask }, md, o, cb)).then((r) => r.image);
    const deleteImage = (ns: string, name: string, sync = false): Promise<unknown> =>
      h.call(ns, (md, o, cb) => h.images.delete({ name, sync }, md, o, cb));

    const createContainer = (ns: string, c: Container): Promise<Container | undefined> =>
      h.call(ns, (md, o, cb) => h.containers.create({ container: c }, md, o, cb)).then((r) => r.container);
    const getContainer = (ns: string, id: string): Promise<Container | undefined> =>
      h.call(ns, (md, o, cb) => h.containers.get({ id }, md, o, cb)).then((r) => r.container);
    const listContainers = (ns: string, filters: string[] = []): Promise<Container[]> =>
      h.call(ns, (md, o, cb) => h.containers.list({ filters }, md, o, cb)).then((r) => r.containers);
    const updateContainer = (ns: string, c: Container, updateMask?: string[]): Promise<Container | undefined> =>
      h.call(ns, (md, o, cb) => h.containers.update({ container: c, updateMask }, md, o, cb)).then((r) => r.container);
    const deleteContainer = (ns: string, id: string): Promise<unknown> =>
      h.call(ns, (md, o, cb) => h.containers.delete({ id }, md, o, cb));

    const createLease = (ns: string, id: string, labels: Record<string, string> = {}) =>
      h.call(ns, (md, o, cb) => h.leases.create({ id, labels }, md, o, cb)).then((r) => r.lease);
    const listLeases = (ns: string, filters: string[] = []) =>
      h.call(ns, (md, o, cb) => h.leases.list({ filters }, md, o, cb)).then((r) => r.leases);
    const deleteLease = (ns: string, id: string, sync = false) =>
      h.call(ns, (md, o, cb) => h.leases.delete({ id, sync }, md, o, cb));
    const addResource = (ns: string, id: string, type: string, rid: string) =>
      h.call(ns, (md, o, cb) => h.leases.addResource({ id, resource: { id: rid, type } }, md, o, cb));
    const deleteResource = (ns: string, id: string, type: string, rid: string) =>
      h.call(ns, (md, o, cb) => h.leases.deleteResource({ id, resource: { id: rid, type } }, md, o, cb));
    const listResources = (ns: string, id: string) =>
      h.call(ns, (md, o, cb) => h.leases.listResources({ id }, md, o, cb)).then((r) => r.resources);

    const listNamespaces = () =>
      h
        .call(undefined, (md, o, cb) => h.namespaces.list({ filter: '' }, md, o, cb))
        .then((r) => r.namespaces.map((n) => n.name));
    const deleteNamespace = (name: string) =>
      h.call(undefined, (md, o, cb) => h.namespaces.delete({ name }, md, o, cb));

    const eventsIn = async (ns: string) => (await h.events()).filter((e) => e.namespace === ns);

    describe('migrations', () => {
      it('are recorded and applying them again changes nothing', async () => {
        expect(await migrate(opened.db, 'metadata', migrations)).toEqual([]);
        const rows = await opened.db.query<{ version: number }>(
          'SELECT version FROM metadata.schema_migrations ORDER BY version',
        );
        expect(rows.map((r) => Number(r.version))).toEqual(migrations.map((m) => m.version));
        for (const t of ['images', 'containers', 'leases', 'lease_resources', 'outbox']) {
          const [r] = await opened.db.query<{ n: string | null }>('SELECT to_regclass($1)::text AS n', [
            `metadata.${t}`,
          ]);
          expect(r?.n).toBe(`metadata.${t}`);
        }
      });
    });

    describe('Images', () => {
      it('creates, gets and lists an image; server sets the timestamps and drops empty labels', async () => {
        const before = Date.now();
        const created = await createImage('img1', image('docker.io/library/a:1', { labels: { x: '1', empty: '' } }));
        expect(created?.name).toBe('docker.io/library/a:1');
        expect(created?.labels).toEqual({ x: '1' });
        expect(created?.createdAt?.getTime()).toBeGreaterThanOrEqual(before - 1000);
        expect(created?.updatedAt).toEqual(created?.createdAt);

        const got = await getImage('img1', 'docker.io/library/a:1');
        expect(got).toEqual(created);
        expect(got?.target).toEqual({ mediaType: indexType, digest: dgst('a'), size: 1234, annotations: {} });
        expect((await listImages('img1')).map((i) => i.name)).toEqual(['docker.io/library/a:1']);
        // Namespaces are separate, and the namespace now exists.
        expect(await listImages('img1-other')).toEqual([]);
        expect(await listNamespaces()).toContain('img1');

        const events = await eventsIn('img1');
        expect(events.map((e) => [e.topic, e.event.typeUrl])).toEqual([
          ['/images/create', 'containerd.services.images.v1.ImageCreate'],
        ]);
        expect(ImageCreate.decode(events[0]?.event.value ?? new Uint8Array())).toEqual({
          name: 'docker.io/library/a:1',
          labels: { x: '1' },
        });
      });

      it('refuses duplicates and bad input with containerd messages, and stores nothing', async () => {
        await createImage('img2', image('dup'));
        const dup = await rejection<ServiceError>(createImage('img2', image('dup')));
        expect([dup.code, dup.message]).toEqual(['already_exists', 'image "dup": already exists']);

        const cases: Array<[Image, string]> = [
          [image(''), 'Image.Name required'],
          [
            image('b', { target: { mediaType: indexType, digest: 'sha256:xyz', size: 1, annotations: {} } }),
            'Target.Digest "sha256:xyz" invalid: invalid checksum digest length: invalid argument',
          ],
          [
            image('b', { target: { mediaType: indexType, digest: 'md5:abc', size: 1, annotations: {} } }),
            'Target.Digest "md5:abc" invalid: unsupported digest algorithm: invalid argument',
          ],
          [
            image('b', { target: { mediaType: indexType, digest: dgst('b'), size: 0, annotations: {} } }),
            'Target.Size must be greater than zero: invalid argument',
          ],
          [
            image('b', { target: { mediaType: '', digest: dgst('b'), size: 5, annotations: {} } }),
            'Target.MediaType must be set: invalid argument',
          ],
          [
            image('b', { labels: { big: 'v'.repeat(4094) } }),
            'image.Labels: label key and value greater than maximum size (4096 bytes), key: big: invalid argument',
          ],
        ];
        for (const [img, message] of cases) {
          const e = await rejection<ServiceError>(createImage('img2', img));
          expect([e.code, e.message]).toEqual(['invalid_argument', message]);
        }
        expect((await listImages('img2')).map((i) => i.name)).toEqual(['dup']);

        const noNs = await rejection<ServiceError>(
          h.call(undefined, (md, o, cb) => h.images.list({ filters: [] }, md, o, cb)),
        );
        expect([noNs.code, noNs.message]).toEqual([
          'failed_precondition',
          'namespace is required: failed precondition',
        ]);
        const badNs = await rejection<ServiceError>(listImages('bad ns'));
        expect(badNs.code).toBe('invalid_argument');
        expect(badNs.message).toMatch(/^namespace validation: identifier "bad ns" must match/);
      });

      it('updates through field masks as containerd does', async () => {
        const ns = 'img3';
        const created = await createImage(
          ns,
          image('u', {
            labels: { a: '1', b: '2' },
            target: { mediaType: indexType, digest: dgst('a'), size: 10, annotations: { n: '1' } },
          }),
        );
        await new Promise((r) => setTimeout(r, 5));

        let u = await updateImage(ns, image('u', { labels: { a: 'changed', c: '3' } }), ['labels.a']);
        expect(u?.labels).toEqual({ a: 'changed', b: '2' });
        expect(u?.createdAt).toEqual(created?.createdAt);
        expect(u?.updatedAt?.getTime()).toBeGreaterThan(created?.updatedAt?.getTime() ?? Infinity);

        u = await updateImage(ns, image('u', { labels: {} }), ['labels.b']);
        expect(u?.labels).toEqual({ a: 'changed' });

        u = await updateImage(ns, image('u', { labels: { z: '9' } }), ['labels']);
        expect(u?.labels).toEqual({ z: '9' });

        u = await updateImage(
          ns,
          image('u', { target: { mediaType: 'm', digest: dgst('c'), size: 99, annotations: { k: 'v' } } }),
          ['annotations.k'],
        );
        expect(u?.target).toEqual({
          mediaType: indexType,
          digest: dgst('a'),
          size: 10,
          annotations: { n: '1', k: 'v' },
        });

        u = await updateImage(
          ns,
          image('u', { target: { mediaType: 'm', digest: dgst('c'), size: 99, annotations: {} } }),
          ['target'],
        );
        expect(u?.target).toEqual({ mediaType: 'm', digest: dgst('c'), size: 99, annotations: {} });

        // No mask: the whole record is replaced.
        u = await updateImage(ns, image('u', { labels: { full: 'yes' } }));
        expect(u?.labels).toEqual({ full: 'yes' });
        expect(u?.target.digest).toBe(dgst('a'));
        expect(await getImage(ns, 'u')).toEqual(u);

        const bad = await rejection<ServiceError>(updateImage(ns, image('u'), ['name']));
        expect([bad.code, bad.message]).toEqual([
          'invalid_argument',
          'cannot update "name" field on image "u": invalid argument',
        ]);
        const invalid = await rejection<ServiceError>(
          updateImage(ns, image('u', { target: { mediaType: indexType, digest: 'nope', size: 1, annotations: {} } }), [
            'target',
          ]),
        );
        expect(invalid.code).toBe('invalid_argument');
        const missing = await rejection<ServiceError>(updateImage(ns, image('missing'), ['labels.a']));
        expect([missing.code, missing.message]).toEqual(['not_found', 'image "missing": not found']);
        const noName = await rejection<ServiceError>(updateImage(ns, image('')));
        expect([noName.code, noName.message]).toEqual(['invalid_argument', 'Image.Name required']);
        expect(await getImage(ns, 'u')).toEqual(u);

        const events = await eventsIn(ns);
        expect(events.map((e) => e.topic)).toEqual(['/images/create', ...Array<string>(6).fill('/images/update')]);
        expect(ImageUpdate.decode(events.at(-1)?.event.value ?? new Uint8Array())).toEqual({
          name: 'u',
          labels: { full: 'yes' },
        });
      });

      it('deletes, with NotFound for a missing image, and publishes /images/delete', async () => {
        const ns = 'img4';
        await createImage(ns, image('d1'));
        await createImage(ns, image('d2'));
        await deleteImage(ns, 'd1');
        await deleteImage(ns, 'd2', true);
        expect(await listImages(ns)).toEqual([]);
        const gone = await rejection<ServiceError>(deleteImage(ns, 'd1'));
        expect([gone.code, gone.message]).toEqual(['not_found', 'image "d1": not found']);
        const get = await rejection<ServiceError>(getImage(ns, 'd1'));
        expect([get.code, get.message]).toEqual(['not_found', 'image "d1": not found']);
        expect((await eventsIn(ns)).map((e) => e.topic)).toEqual([
          '/images/create',
          '/images/create',
          '/images/delete',
          '/images/delete',
        ]);
      });

      it('filters List with containerd filter syntax; a malformed filter is InvalidArgument', async () => {
        const ns = 'img5';
        await createImage(
          ns,
          image('docker.io/library/busybox:1', { labels: { 'containerd.io/gc.root': 'x', env: 'prod' } }),
        );
        await createImage(
          ns,
          image('docker.io/library/alpine:3', {
            labels: { env: 'dev' },
            target: {
              mediaType: 'application/vnd.oci.image.manifest.v1+json',
              digest: dgst('b'),
              size: 7,
              annotations: { 'org.opencontainers.image.ref.name': '3' },
            },
          }),
        );
        await createImage(ns, image('quay.io/x/y:z'));
        const names = async (filters: string[]): Promise<string[]> =>
          (await listImages(ns, filters)).map((i) => i.name);

        expect(await names([])).toEqual(['docker.io/library/alpine:3', 'docker.io/library/busybox:1', 'quay.io/x/y:z']);
        expect(await names([''])).toHaveLength(3);
        expect(await names(['name==quay.io/x/y:z'])).toEqual(['quay.io/x/y:z']);
        expect(await names(['name~=^docker.io/'])).toEqual([
          'docker.io/library/alpine:3',
          'docker.io/library/busybox:1',
        ]);
        expect(await names(['labels.env==prod'])).toEqual(['docker.io/library/busybox:1']);
        expect(await names(['labels."containerd.io/gc.root"'])).toEqual(['docker.io/library/busybox:1']);
        expect(await names(['labels.env!=prod'])).toEqual(['docker.io/library/alpine:3', 'quay.io/x/y:z']);
        expect(await names([`target.digest==${dgst('b')}`])).toEqual(['docker.io/library/alpine:3']);
        expect(await names(['target.mediatype~=manifest'])).toEqual(['docker.io/library/alpine:3']);
        expect(await names(['annotations."org.opencontainers.image.ref.name"==3'])).toEqual([
          'docker.io/library/alpine:3',
        ]);
        expect(await names(['labels.env==prod', 'name==quay.io/x/y:z'])).toEqual([
          'docker.io/library/busybox:1',
          'quay.io/x/y:z',
        ]);
        expect(await names(['labels.env==prod,name~=alpine'])).toEqual([]);

        for (const bad of ['name==', 'labels.', 'name~=(', ',', 'name=="unterminated']) {
          const e = await rejection<ServiceError>(listImages(ns, [bad]));
          expect(e.code, bad).toBe('invalid_argument');
          expect(e.message, bad).toMatch(/^filters: parse error: .*: invalid argument$/);
        }
      });
    });

    describe('Containers', () => {
      it('creates a container keeping spec and runtime options verbatim; Get, List and ListStream return it', async () => {
        const ns = 'ctr1';
        const created = await createContainer(
          ns,
          container('c1', { extensions: { ext: { typeUrl: 'x/y', value: Buffer.from([1, 2, 3]) } } }),
        );
        expect(created?.spec).toEqual({
          typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Spec',
          value: specJson,
        });
        expect(created?.runtime).toEqual({
          name: 'io.containerd.runc.v2',
          options: { typeUrl: 'containerd.runc.v1.Options', value: Buffer.alloc(0) },
        });
        expect(created?.createdAt?.getTime()).toBeGreaterThan(goZeroTime.getTime());

        const got = await getContainer(ns, 'c1');
        expect(got).toEqual(created);
        expect(got?.extensions).toEqual({ ext: { typeUrl: 'x/y', value: Buffer.from([1, 2, 3]) } });
        await createContainer(ns, container('c0', { runtime: { name: 'io.containerd.runc.v1', options: undefined } }));
        expect((await getContainer(ns, 'c0'))?.runtime).toEqual({ name: 'io.containerd.runc.v1', options: undefined });
        expect((await listContainers(ns)).map((c) => c.id)).toEqual(['c0', 'c1']);

        const streamed: string[] = [];
        const md = new grpc.Metadata();
        md.set('containerd-namespace', ns);
        const stream = h.containers.listStream({ filters: ['id==c1'] }, md);
        for await (const m of stream as AsyncIterable<{ container?: Container }>) streamed.push(m.container?.id ?? '');
        expect(streamed).toEqual(['c1']);

        const events = await eventsIn(ns);
        expect(events.map((e) => [e.topic, e.event.typeUrl])).toEqual([
          ['/containers/create', 'containerd.events.ContainerCreate'],
          ['/containers/create', 'containerd.events.ContainerCreate'],
        ]);
        expect(ContainerCreate.decode(events[0]?.event.value ?? new Uint8Array())).toEqual({
          id: 'c1',
          image: 'docker.io/library/busybox:latest',
          runtime: {
            name: 'io.containerd.runc.v2',
            options: { typeUrl: 'containerd.runc.v1.Options', value: Buffer.alloc(0) },
          },
        });
      });

      it('validates as containerd does and refuses duplicates', async () => {
        const ns = 'ctr2';
        const prefix = 'create container failed validation: ';
        const cases: Array<[Container, string]> = [
          [
            container('bad id'),
            `${prefix}container.ID: identifier "bad id" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument`,
          ],
          [container(''), `${prefix}container.ID: identifier must not be empty: invalid argument`],
          [
            container('ok', { runtime: { name: '', options: undefined } }),
            `${prefix}container.Runtime.Name must be set: invalid argument`,
          ],
          [container('ok', { spec: undefined }), `${prefix}container.Spec must be set: invalid argument`],
          [
            container('ok', { snapshotter: '' }),
            `${prefix}container.Snapshotter must be set if container.SnapshotKey is set: invalid argument`,
          ],
          [
            container('ok', { extensions: { '': { typeUrl: 'a', value: Buffer.alloc(0) } } }),
            `${prefix}container.Extension keys must not be zero-length: invalid argument`,
          ],
          [
            container('ok', { labels: { ['k'.repeat(4097)]: '' } }),
            `${prefix}containers.Labels: label key and value greater than maximum size (4096 bytes), key: kkkkkkkkkk: invalid argument`,
          ],
        ];
        for (const [c, message] of cases) {
          const e = await rejection<ServiceError>(createContainer(ns, c));
          expect([e.code, e.message]).toEqual(['invalid_argument', message]);
        }
        expect(await listContainers(ns)).toEqual([]);
        await createContainer(ns, container('c'));
        const dup = await rejection<ServiceError>(createContainer(ns, container('c')));
        expect([dup.code, dup.message]).toEqual(['already_exists', 'container "c": already exists']);
      });

      it('updates through field masks; snapshotter and runtime are immutable', async () => {
        const ns = 'ctr3';
        const created = await createContainer(ns, container('u', { labels: { a: '1', b: '2' } }));
        let u = await updateContainer(ns, container('u', { labels: { a: 'x' } }), ['labels.a']);
        expect(u?.labels).toEqual({ a: 'x', b: '2' });
        u = await updateContainer(ns, container('u', { image: 'img2' }), ['image']);
        expect(u?.image).toBe('img2');
        const spec2 = {
          typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Spec',
          value: Buffer.from('{"ociVersion":"1.1.0"}'),
        };
        u = await updateContainer(ns, container('u', { spec: spec2 }), ['spec']);
        expect(u?.spec).toEqual(spec2);
        u = await updateContainer(ns, container('u', { snapshotKey: 'other' }), ['snapshotkey']);
        expect(u?.snapshotKey).toBe('other');
        u = await updateContainer(
          ns,
          container('u', { extensions: { e1: { typeUrl: 't', value: Buffer.from('1') } } }),
          ['extensions'],
        );
        expect(Object.keys(u?.extensions ?? {})).toEqual(['e1']);
        u = await updateContainer(
          ns,
          container('u', { extensions: { e2: { typeUrl: 't', value: Buffer.from('2') } } }),
          ['extensions.e2'],
        );
        expect(Object.keys(u?.extensions ?? {})).toEqual(['e1', 'e2']);
        u = await updateContainer(ns, container('u', { labels: { only: 'this' } }), ['labels']);
        expect(u?.labels).toEqual({ only: 'this' });
        expect(u?.createdAt).toEqual(created?.createdAt);

        // Without a mask: labels, spec, extensions, image and snapshot key are replaced.
        u = await updateContainer(ns, container('u', { labels: { full: '1' }, image: 'img3', extensions: {} }));
        expect([u?.labels, u?.image, u?.snapshotKey, u?.extensions]).toEqual([{ full: '1' }, 'img3', 'u', {}]);

        const imm1 = await rejection<ServiceError>(updateContainer(ns, container('u', { snapshotter: 'native' })));
        expect([imm1.code, imm1.message]).toEqual([
          'invalid_argument',
          'container.Snapshotter field is immutable: invalid argument',
        ]);
        const imm2 = await rejection<ServiceError>(
          updateContainer(ns, container('u', { runtime: { name: 'other', options: undefined } })),
        );
        expect(imm2.message).toBe('container.Runtime.Name field is immutable: invalid argument');
        const runtime = await rejection<ServiceError>(updateContainer(ns, container('u'), ['runtime']));
        expect([runtime.code, runtime.message]).toEqual([
          'invalid_argument',
          'cannot update "runtime" field on "u": invalid argument',
        ]);
        const unset = await rejection<ServiceError>(updateContainer(ns, container('u', { spec: undefined }), ['spec']));
        expect(unset.message).toBe('update failed validation: container.Spec must be set: invalid argument');
        const noId = await rejection<ServiceError>(updateContainer(ns, container('')));
        expect([noId.code, noId.message]).toEqual(['invalid_argument', 'Container.ID required']);
        const missing = await rejection<ServiceError>(updateContainer(ns, container('nope'), ['image']));
        expect([missing.code, missing.message]).toEqual(['not_found', 'container "nope": not found']);
        const emptyNs = await rejection<ServiceError>(updateContainer('ctr3-empty', container('nope'), ['image']));
        expect(emptyNs.message).toBe('cannot update container "nope" in namespace "ctr3-empty": not found');

        const events = await eventsIn(ns);
        expect(events.map((e) => e.topic)).toEqual([
          '/containers/create',
          ...Array<string>(8).fill('/containers/update'),
        ]);
        expect(ContainerUpdate.decode(events.at(-1)?.event.value ?? new Uint8Array())).toEqual({
          id: 'u',
          image: 'img3',
          labels: { full: '1' },
          snapshotKey: 'u',
        });
      });

      it('deletes with containerd messages and filters List', async () => {
        const ns = 'ctr4';
        const none = await rejection<ServiceError>(deleteContainer(ns, 'x'));
        expect([none.code, none.message]).toEqual([
          'not_found',
          'cannot delete container "x" in namespace "ctr4": not found',
        ]);
        await createContainer(ns, container('a', { labels: { role: 'web' } }));
        await createContainer(
          ns,
          container('b', { image: 'alpine', runtime: { name: 'io.containerd.runc.v1', options: undefined } }),
        );
        const ids = async (filters: string[]): Promise<string[]> =>
          (await listContainers(ns, filters)).map((c) => c.id);
        expect(await ids(['labels.role==web'])).toEqual(['a']);
        expect(await ids(['image==alpine'])).toEqual(['b']);
        expect(await ids(['runtime.name==io.containerd.runc.v2'])).toEqual(['a']);
        expect(await ids(['id~=^[ab]$'])).toEqual(['a', 'b']);
        const bad = await rejection<ServiceError>(listContainers(ns, ['id==a,']));
        expect(bad.code).toBe('invalid_argument');

        await deleteContainer(ns, 'a');
        const gone = await rejection<ServiceError>(deleteContainer(ns, 'a'));
        expect([gone.code, gone.message]).toEqual(['not_found', 'container a: not found']);
        const get = await rejection<ServiceError>(getContainer(ns, 'a'));
        expect(get.message).toBe('container "a" in namespace "ctr4": not found');
        expect((await eventsIn(ns)).map((e) => e.topic)).toEqual([
          '/containers/create',
          '/containers/create',
          '/containers/delete',
        ]);
      });
    });

    describe('Leases', () => {
      it('creates leases with a given or generated id and their expiry label; lists with filters', async () => {
        const ns = 'lease1';
        const expire = new Date(Date.now() + 86_400_000).toISOString().replace(/\.\d+Z$/, 'Z');
        const given = await createLease(ns, 'mine', { 'containerd.io/gc.expire': expire, empty: '' });
        expect(given?.id).toBe('mine');
        expect(given?.labels).toEqual({ 'containerd.io/gc.expire': expire });
        expect(given?.createdAt).toBeInstanceOf(Date);
        const generated = await createLease(ns, '');
        expect(generated?.id).toMatch(/^\d{1,9}-[A-Za-z0-9_-]{4}$/);
        const dup = await rejection<ServiceError>(createLease(ns, 'mine'));
        expect([dup.code, dup.message]).toEqual(['already_exists', 'lease "mine": already exists']);

        const all = await listLeases(ns);
        expect(all.map((l) => l.id).sort()).toEqual([generated?.id, 'mine'].sort());
        expect(all.find((l) => l.id === 'mine')).toEqual(given);
        expect((await listLeases(ns, ['labels."containerd.io/gc.expire"'])).map((l) => l.id)).toEqual(['mine']);
        expect((await listLeases(ns, ['id==mine'])).map((l) => l.id)).toEqual(['mine']);
        expect(await listLeases(ns, ['id==other'])).toEqual([]);
        expect((await rejection<ServiceError>(listLeases(ns, ['id=']))).code).toBe('invalid_argument');
        expect(await listNamespaces()).toContain(ns);
        expect(await eventsIn(ns)).toEqual([]);
      });

      it('keeps resources of each type, validates them as containerd does, and drops them with the lease', async () => {
        const ns = 'lease2';
        await createLease(ns, 'l');
        await addResource(ns, 'l', 'snapshots/overlayfs', 'extract-1 sha256:abc');
        await addResource(ns, 'l', 'ingests', 'layer-sha256:123');
        await addResource(ns, 'l', 'content', dgst('c'));
        await addResource(ns, 'l', 'content', dgst('c'));
        await addResource(ns, 'l', 'snapshots/native', 'k2');
        expect(await listResources(ns, 'l')).toEqual([
          { id: dgst('c'), type: 'content' },
          { id: 'layer-sha256:123', type: 'ingests' },
          { id: 'k2', type: 'snapshots/native' },
          { id: 'extract-1 sha256:abc', type: 'snapshots/overlayfs' },
        ]);

        const cases: Array<[string, string, string, string]> = [
          [
            'content',
            'sha256:short',
            'invalid_argument',
            'invalid content resource id sha256:short: invalid checksum digest length: invalid argument',
          ],
          ['content/x', dgst('d'), 'invalid_argument', 'invalid resource type content/x: invalid argument'],
          ['ingests/x', 'r', 'invalid_argument', 'invalid resource type ingests/x: invalid argument'],
          ['snapshots', 'k', 'invalid_argument', 'invalid snapshot resource type snapshots: invalid argument'],
          ['snapshots/a/b', 'k', 'invalid_argument', 'invalid snapshot resource type snapshots/a/b: invalid argument'],
          ['images', 'x', 'not_implemented', 'resource type images not supported yet: not implemented'],
        ];
        for (const [type, id, code, message] of cases) {
          const e = await rejection<ServiceError>(addResource(ns, 'l', type, id));
          expect([e.code, e.message]).toEqual([code, message]);
        }
        const noLease = await rejection<ServiceError>(addResource(ns, 'missing', 'content', dgst('c')));
        expect([noLease.code, noLease.message]).toEqual(['not_found', 'lease "missing": not found']);
        // The lease is looked up before the resource is parsed, as containerd does.
        const anyResource: Array<[string, string]> = [
          ['content', 'sha256:short'],
          ['images', 'x'],
          ['ingests', 'r'],
        ];
        for (const [type, id] of anyResource) {
          for (const op of [addResource, deleteResource]) {
            const e = await rejection<ServiceError>(op(ns, 'missing', type, id));
            expect([e.code, e.message]).toEqual(['not_found', 'lease "missing": not found']);
          }
        }
        const badDelete = await rejection<ServiceError>(deleteResource(ns, 'l', 'images', 'x'));
        expect([badDelete.code, badDelete.message]).toEqual([
          'not_implemented',
          'resource type images not supported yet: not implemented',
        ]);
        expect((await rejection<ServiceError>(listResources(ns, 'missing'))).code).toBe('not_found');

        await deleteResource(ns, 'l', 'ingests', 'layer-sha256:123');
        await deleteResource(ns, 'l', 'ingests', 'never-added');
        expect((await listResources(ns, 'l')).map((r) => r.type)).toEqual([
          'content',
          'snapshots/native',
          'snapshots/overlayfs',
        ]);

        await deleteLease(ns, 'l', true);
        const gone = await rejection<ServiceError>(deleteLease(ns, 'l'));
        expect([gone.code, gone.message]).toEqual(['not_found', 'lease "l": not found']);
        await createLease(ns, 'l');
        expect(await listResources(ns, 'l')).toEqual([]);
      });
    });

    describe('storage', () => {
      it('keeps labels as JSON objects on every backend, so SQL over them sees maps', async () => {
        await h.call(undefined, (md, o, cb) =>
          h.namespaces.create({ namespace: { name: 'store1', labels: { a: 'b' } } }, md, o, cb),
        );
        await createImage('store1', image('i', { labels: { a: 'b' } }));
        await createContainer('store1', container('c'));
        await createLease('store1', 'l', { a: 'b' });
        for (const table of ['namespaces', 'images', 'containers', 'leases']) {
          const where = table === 'namespaces' ? 'name' : 'namespace';
          const rows = await opened.db.query<{ t: string }>(
            `SELECT DISTINCT jsonb_typeof(labels) AS t FROM metadata.${table} WHERE ${where} = 'store1'`,
          );
          expect(
            rows.map((r) => r.t),
            table,
          ).toEqual(['object']);
        }
      });
    });

    describe('Namespaces with resources', () => {
      it('refuses to delete a namespace holding images or containers, and takes its leases with it', async () => {
        await createImage('busy', image('i'));
        await createContainer('busy', container('c'));
        const both = await rejection<ServiceError>(deleteNamespace('busy'));
        expect([both.code, both.message]).toEqual([
          'failed_precondition',
          'namespace "busy" must be empty, but it still has images, containers: failed precondition',
        ]);
        await deleteImage('busy', 'i');
        const one = await rejection<ServiceError>(deleteNamespace('busy'));
        expect(one.message).toBe('namespace "busy" must be empty, but it still has containers: failed precondition');
        await deleteContainer('busy', 'c');

        await createLease('busy', 'keep');
        await addResource('busy', 'keep', 'content', dgst('e'));
        await deleteNamespace('busy');
        expect(await listNamespaces()).not.toContain('busy');
        expect(await listLeases('busy')).toEqual([]);
        const [left] = await opened.db.query<{ n: number | string }>(
          "SELECT count(*) AS n FROM metadata.lease_resources WHERE namespace = 'busy'",
        );
        expect(Number(left?.n)).toBe(0);
      });
    });
  });
}
