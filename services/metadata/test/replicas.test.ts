import { type Db, openDb } from '@berth/common/db';
import type { ServiceError } from '@berth/common/errors';
import type { Container } from '@berth/proto/containerd/services/containers/v1/containers';
import type { Image } from '@berth/proto/containerd/services/images/v1/images';
import { eventually, rejection } from '@berth/testing/async-checks';
import { notificationsSettled } from '@berth/testing/notifications';
import { usePostgres } from '@berth/testing/postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rowChannels } from '../src/db/migrations.js';
import { type Harness, startHarness } from './harness.js';

interface Shared {
  /** What replica A uses; B opens its own connections to the same database where it can. */
  readonly db: Db;
  openOther(): Promise<Db>;
  drop(): Promise<void>;
}

const digest = `sha256:${'a'.repeat(64)}`;
const zero = new Date(0);

const image = (name: string, labels: Record<string, string>): Image => ({
  name,
  labels,
  target: { mediaType: 'application/vnd.oci.image.index.v1+json', digest, size: 10, annotations: {} },
  createdAt: zero,
  updatedAt: zero,
});

const container = (id: string, labels: Record<string, string>): Container => ({
  id,
  labels,
  image: 'busybox',
  runtime: { name: 'io.containerd.runc.v2', options: undefined },
  spec: { typeUrl: 'types.containerd.io/opencontainers/runtime-spec/1/Spec', value: Buffer.from('{}') },
  snapshotter: 'overlayfs',
  snapshotKey: id,
  extensions: {},
  createdAt: zero,
  updatedAt: zero,
});

/**
 * Two metadata replicas over one database: Get answers from memory on each, yet what one writes the other
 * sees, through the row notifications only. Each test first proves A answers from memory, so a broken
 * invalidation fails it rather than passing on a cache miss.
 */
function replicaSuite(name: string, open: () => Promise<Shared>): void {
  describe(`metadata replicas sharing one database: ${name}`, () => {
    let shared: Shared;
    let a: Harness;
    let b: Harness;
    beforeAll(async () => {
      shared = await open();
      a = await startHarness(shared.db);
      b = await startHarness(await shared.openOther());
    });
    afterAll(async () => {
      await b?.close();
      await a?.close();
      await shared?.drop();
    });

    const getImage = (h: Harness, ns: string, name: string) =>
      h.call(ns, (md, o, cb) => h.images.get({ name }, md, o, cb)).then((r) => r.image);
    const getContainer = (h: Harness, ns: string, id: string) =>
      h.call(ns, (md, o, cb) => h.containers.get({ id }, md, o, cb)).then((r) => r.container);
    const getNamespace = (h: Harness, name: string) =>
      h.call(undefined, (md, o, cb) => h.namespaces.get({ name }, md, o, cb)).then((r) => r.namespace);
    const listImages = (h: Harness, ns: string, filters: string[] = []) =>
      h
        .call(ns, (md, o, cb) => h.images.list({ filters }, md, o, cb))
        .then((r) => r.images.map((i) => `${i.name} ${JSON.stringify(i.labels)}`));
    const createImage = (h: Harness, ns: string, img: Image) =>
      h.call(ns, (md, o, cb) => h.images.create({ image: img }, md, o, cb));
    const createContainer = (h: Harness, ns: string, c: Container) =>
      h.call(ns, (md, o, cb) => h.containers.create({ container: c }, md, o, cb));

    /** Runs `sql` with triggers off: a change no notification announces. */
    const behindTheTrigger = (sql: string, params: unknown[]) =>
      shared.db.transaction(async (tx) => {
        await tx.exec('SET LOCAL session_replication_role = replica');
        await tx.query(sql, params);
      });

    it('answers Get from memory: rows changed behind the triggers are not seen by a replica that read them', async () => {
      await createImage(a, 'mem', image('img', { v: '1' }));
      await createContainer(a, 'mem', container('c', { v: '1' }));
      await a.call(undefined, (md, o, cb) =>
        a.namespaces.update({ namespace: { name: 'mem', labels: { v: '1' } }, updateMask: [] }, md, o, cb),
      );
      await notificationsSettled(shared.db, Object.values(rowChannels));
      expect((await getImage(a, 'mem', 'img'))?.labels).toEqual({ v: '1' });
      expect((await getContainer(a, 'mem', 'c'))?.labels).toEqual({ v: '1' });
      expect((await getNamespace(a, 'mem'))?.labels).toEqual({ v: '1' });

      const hidden = '{"v":"hidden"}';
      await behindTheTrigger('UPDATE metadata.images SET labels = $1::text::jsonb WHERE namespace = $2', [
        hidden,
        'mem',
      ]);
      await behindTheTrigger('UPDATE metadata.containers SET labels = $1::text::jsonb WHERE namespace = $2', [
        hidden,
        'mem',
      ]);
      await behindTheTrigger('UPDATE metadata.namespaces SET labels = $1::text::jsonb WHERE name = $2', [
        hidden,
        'mem',
      ]);
      expect((await getImage(a, 'mem', 'img'))?.labels).toEqual({ v: '1' });
      expect((await getContainer(a, 'mem', 'c'))?.labels).toEqual({ v: '1' });
      expect((await getNamespace(a, 'mem'))?.labels).toEqual({ v: '1' });
      expect((await getImage(b, 'mem', 'img'))?.labels).toEqual({ v: 'hidden' });
      expect((await getContainer(b, 'mem', 'c'))?.labels).toEqual({ v: 'hidden' });
      expect((await getNamespace(b, 'mem'))?.labels).toEqual({ v: 'hidden' });
    });

    it('answers List from memory: images changed behind the triggers are not listed by a replica that listed them', async () => {
      await createImage(a, 'lmem', image('one', { v: '1' }));
      await createImage(a, 'lmem', image('two', { v: '1' }));
      await notificationsSettled(shared.db, Object.values(rowChannels));
      expect(await listImages(a, 'lmem')).toEqual(['one {"v":"1"}', 'two {"v":"1"}']);
      await behindTheTrigger('UPDATE metadata.images SET labels = $1::text::jsonb WHERE namespace = $2', [
        '{"v":"hidden"}',
        'lmem',
      ]);
      expect(await listImages(a, 'lmem')).toEqual(['one {"v":"1"}', 'two {"v":"1"}']);
      // Filters are applied to what is in memory, the indexed ones (name==) too.
      expect(await listImages(a, 'lmem', ['name==two'])).toEqual(['two {"v":"1"}']);
      expect(await listImages(a, 'lmem', ['labels.v==1,name~=^o'])).toEqual(['one {"v":"1"}']);
      expect(await listImages(b, 'lmem', ['name==two'])).toEqual(['two {"v":"hidden"}']);
      expect(await listImages(b, 'lmem')).toEqual(['one {"v":"hidden"}', 'two {"v":"hidden"}']);
    });

    it("lists what this replica wrote at once, and the other replica's image create, update and delete", async () => {
      await createImage(a, 'list', image('a', { v: '1' }));
      await notificationsSettled(shared.db, Object.values(rowChannels));
      expect(await listImages(a, 'list')).toEqual(['a {"v":"1"}']);
      await createImage(a, 'list', image('b', { v: '1' }));
      expect(await listImages(a, 'list')).toEqual(['a {"v":"1"}', 'b {"v":"1"}']);

      await createImage(b, 'list', image('c', { v: '1' }));
      await eventually(async () =>
        expect(await listImages(a, 'list')).toEqual(['a {"v":"1"}', 'b {"v":"1"}', 'c {"v":"1"}']),
      );
      await b.call('list', (md, o, cb) =>
        b.images.update({ image: image('a', { v: '2' }), updateMask: ['labels.v'] }, md, o, cb),
      );
      await eventually(async () => expect(await listImages(a, 'list', ['labels.v==2'])).toEqual(['a {"v":"2"}']));
      await b.call('list', (md, o, cb) => b.images.delete({ name: 'b' }, md, o, cb));
      await eventually(async () => expect(await listImages(a, 'list')).toEqual(['a {"v":"2"}', 'c {"v":"1"}']));
      // Another namespace's change leaves this one's list alone, and is seen in its own.
      await createImage(b, 'list2', image('x', {}));
      await eventually(async () => expect(await listImages(a, 'list2')).toEqual(['x {}']));
      expect(await listImages(a, 'list')).toEqual(['a {"v":"2"}', 'c {"v":"1"}']);
    });

    it("sees the other replica's image update and delete", async () => {
      await createImage(a, 'img', image('docker.io/library/busybox:latest', { v: '1' }));
      await notificationsSettled(shared.db, Object.values(rowChannels));
      expect((await getImage(a, 'img', 'docker.io/library/busybox:latest'))?.labels).toEqual({ v: '1' });
      await b.call('img', (md, o, cb) =>
        b.images.update(
          { image: image('docker.io/library/busybox:latest', { v: '2' }), updateMask: ['labels.v'] },
          md,
          o,
          cb,
        ),
      );
      await eventually(async () =>
        expect((await getImage(a, 'img', 'docker.io/library/busybox:latest'))?.labels).toEqual({ v: '2' }),
      );
      await b.call('img', (md, o, cb) => b.images.delete({ name: 'docker.io/library/busybox:latest' }, md, o, cb));
      await eventually(async () => {
        const e = await rejection<ServiceError>(getImage(a, 'img', 'docker.io/library/busybox:latest'));
        expect([e.code, e.message]).toEqual(['not_found', 'image "docker.io/library/busybox:latest": not found']);
      });
    });

    it("sees the other replica's container update and delete, and a container created again", async () => {
      await createContainer(a, 'ctr', container('c1', { v: '1' }));
      await notificationsSettled(shared.db, Object.values(rowChannels));
      expect((await getContainer(a, 'ctr', 'c1'))?.labels).toEqual({ v: '1' });
      await b.call('ctr', (md, o, cb) =>
        b.containers.update({ container: container('c1', { v: '2' }), updateMask: ['labels.v'] }, md, o, cb),
      );
      await eventually(async () => expect((await getContainer(a, 'ctr', 'c1'))?.labels).toEqual({ v: '2' }));
      await b.call('ctr', (md, o, cb) => b.containers.delete({ id: 'c1' }, md, o, cb));
      await eventually(async () => {
        const e = await rejection<ServiceError>(getContainer(a, 'ctr', 'c1'));
        expect([e.code, e.message]).toEqual(['not_found', 'container "c1" in namespace "ctr": not found']);
      });
      await createContainer(b, 'ctr', container('c1', { v: '3' }));
      expect((await getContainer(a, 'ctr', 'c1'))?.labels).toEqual({ v: '3' });
    });

    it("sees the other replica's namespace label update and delete, and an absent namespace created", async () => {
      expect(await getNamespace(a, 'ns1')).toEqual({ name: 'ns1', labels: {} });
      await b.call(undefined, (md, o, cb) =>
        b.namespaces.create({ namespace: { name: 'ns1', labels: { v: '1' } } }, md, o, cb),
      );
      await eventually(async () => expect((await getNamespace(a, 'ns1'))?.labels).toEqual({ v: '1' }));
      await b.call(undefined, (md, o, cb) =>
        b.namespaces.update({ namespace: { name: 'ns1', labels: { v: '2' } }, updateMask: ['labels.v'] }, md, o, cb),
      );
      await eventually(async () => expect((await getNamespace(a, 'ns1'))?.labels).toEqual({ v: '2' }));
      await b.call(undefined, (md, o, cb) => b.namespaces.delete({ name: 'ns1' }, md, o, cb));
      await eventually(async () => expect((await getNamespace(a, 'ns1'))?.labels).toEqual({}));
    });

    it('sees rows deleted by any other writer of the tables, as a gc would', async () => {
      await createImage(a, 'gc', image('i', {}));
      await createContainer(a, 'gc', container('c', {}));
      await notificationsSettled(shared.db, Object.values(rowChannels));
      await getImage(a, 'gc', 'i');
      await getContainer(a, 'gc', 'c');
      expect(await listImages(a, 'gc')).toEqual(['i {}']);
      await shared.db.query('DELETE FROM metadata.images WHERE namespace = $1', ['gc']);
      await shared.db.query('DELETE FROM metadata.containers WHERE namespace = $1', ['gc']);
      await eventually(async () =>
        expect((await rejection<ServiceError>(getImage(a, 'gc', 'i'))).code).toBe('not_found'),
      );
      await eventually(async () => expect(await listImages(a, 'gc')).toEqual([]));
      await eventually(async () =>
        expect((await rejection<ServiceError>(getContainer(a, 'gc', 'c'))).code).toBe('not_found'),
      );
    });

    it('sees a change to an image whose key is too long to notify: every image is dropped', async () => {
      // Repetitive, so the primary key index still takes it compressed; the NOTIFY payload could not.
      const long = `long/${'x'.repeat(9_000)}`;
      await createImage(a, 'big', image(long, { v: '1' }));
      await createImage(a, 'big', image('short', { v: '1' }));
      await notificationsSettled(shared.db, Object.values(rowChannels));
      await getImage(a, 'big', long);
      await getImage(a, 'big', 'short');
      expect(await listImages(a, 'big', ['name==short'])).toEqual(['short {"v":"1"}']);
      await behindTheTrigger('UPDATE metadata.images SET labels = $1::text::jsonb WHERE name = $2', [
        '{"v":"2"}',
        'short',
      ]);
      await b.call('big', (md, o, cb) =>
        b.images.update({ image: image(long, { v: '2' }), updateMask: ['labels.v'] }, md, o, cb),
      );
      await eventually(async () => expect((await getImage(a, 'big', long))?.labels).toEqual({ v: '2' }));
      expect((await getImage(a, 'big', 'short'))?.labels).toEqual({ v: '2' });
      expect(await listImages(a, 'big', ['name==short'])).toEqual(['short {"v":"2"}']);
    });

    it('sees a TRUNCATE, which fires no row trigger', async () => {
      await createImage(a, 'trunc', image('t', {}));
      await notificationsSettled(shared.db, Object.values(rowChannels));
      await getImage(a, 'trunc', 't');
      expect(await listImages(a, 'trunc')).toEqual(['t {}']);
      await shared.db.exec('TRUNCATE metadata.images');
      await eventually(async () =>
        expect((await rejection<ServiceError>(getImage(a, 'trunc', 't'))).code).toBe('not_found'),
      );
      await eventually(async () => expect(await listImages(a, 'trunc')).toEqual([]));
    });
  });
}

/** PGlite is one in-process session: both replicas share it (the harness does not close it). */
replicaSuite('PGlite', async () => {
  const db = await openDb('pglite://memory');
  return { db, openOther: async () => db, drop: () => db.close() };
});

replicaSuite('PostgreSQL server', async () => {
  const pg = await usePostgres();
  const db = await openDb(pg.url);
  const others: Db[] = [];
  return {
    db,
    openOther: async () => {
      const other = await openDb(pg.url);
      others.push(other);
      return other;
    },
    drop: async () => {
      for (const d of [db, ...others]) await d.close();
      await pg.drop();
    },
  };
});
