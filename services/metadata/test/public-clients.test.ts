import { openDb } from '@berth/common/db';
import { ServiceError } from '@berth/common/errors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImagesClient, LeasesClient, NamespacesClient } from '../src/client.js';
import { imagesOver, leasesOver, namespacesOver } from '../src/client.js';
import { type Harness, startHarness } from './harness.js';

const target = {
  mediaType: 'application/vnd.oci.image.index.v1+json',
  digest: `sha256:${'a'.repeat(64)}`,
  size: 100,
};

// The clients a node's callers (the pull client, `berth images`) use for metadata's public APIs, over gRPC.
describe('metadata public clients over gRPC', () => {
  let h: Harness;
  let images: ImagesClient;
  let leases: LeasesClient;
  let namespaces: NamespacesClient;
  const ctx = { namespace: 'pub', lease: undefined, signal: new AbortController().signal };

  beforeAll(async () => {
    h = await startHarness(await openDb('pglite://memory'));
    images = imagesOver(h.images);
    leases = leasesOver(h.leases);
    namespaces = namespacesOver(h.namespaces);
  });
  afterAll(async () => {
    await h?.close();
  });

  it('creates, reads, lists, updates and deletes images in domain types', async () => {
    await images.create(ctx, { name: 'registry.test/a:1', labels: { k: 'v' }, target });
    const got = await images.get(ctx, 'registry.test/a:1');
    expect(got).toMatchObject({
      name: 'registry.test/a:1',
      labels: { k: 'v' },
      target: { ...target, annotations: {} },
    });
    expect(got.createdAt).toBeInstanceOf(Date);

    await images.update(ctx, { name: 'registry.test/a:1', labels: { k: 'w' }, target }, ['labels.k']);
    expect((await images.list(ctx, ['labels.k==w'])).map((i) => i.name)).toEqual(['registry.test/a:1']);

    const again = await images.create(ctx, { name: 'registry.test/a:1', labels: {}, target }).catch((e) => e);
    expect(again).toBeInstanceOf(ServiceError);
    expect((again as ServiceError).code).toBe('already_exists');

    await images.delete(ctx, 'registry.test/a:1');
    const gone = await images.get(ctx, 'registry.test/a:1').catch((e) => e);
    expect((gone as ServiceError).code).toBe('not_found');
  });

  it('creates, lists and deletes leases', async () => {
    const lease = await leases.create(ctx, 'pub-lease', { 'containerd.io/gc.expire': '2099-01-01T00:00:00Z' });
    expect(lease).toMatchObject({ id: 'pub-lease', labels: { 'containerd.io/gc.expire': '2099-01-01T00:00:00Z' } });
    await leases.create(ctx, 'other-lease', {});
    expect((await leases.list(ctx, ['id==pub-lease'])).map((l) => l.id)).toEqual(['pub-lease']);
    await leases.delete(ctx, 'pub-lease');
    expect(await leases.list(ctx, ['id==pub-lease'])).toEqual([]);
    expect(((await leases.delete(ctx, 'pub-lease').catch((e) => e)) as ServiceError).code).toBe('not_found');
  });

  it('reads a namespace and its labels', async () => {
    await h.call(undefined, (md, o, cb) =>
      h.namespaces.create({ namespace: { name: 'labelled', labels: { a: 'b' } } }, md, o, cb),
    );
    expect(await namespaces.get(ctx, 'labelled')).toEqual({ name: 'labelled', labels: { a: 'b' } });
  });
});
