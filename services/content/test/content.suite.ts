import { randomBytes } from 'node:crypto';
import { backgroundContext } from '@berth/common/context';
import { nopLogger } from '@berth/common/log';
import { ContentDelete } from '@berth/proto/containerd/events/content';
import { WriteAction } from '@berth/proto/containerd/services/content/v1/content';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlobBackendConfig } from '../src/index.js';
import {
  call,
  collect,
  failsWith,
  type Harness,
  md,
  readAll,
  sha256,
  startHarness,
  WriteStream,
  writeBlob,
} from './harness.js';

export interface BackendUnderTest {
  readonly config: BlobBackendConfig;
  /** Names of the objects or files holding committed blobs, to prove nothing partial was placed. */
  committedBlobs(): Promise<string[]>;
  teardown(): Promise<void>;
}

/**
 * One conformance suite for the Content service, run against every blob backend: the whole gRPC surface
 * as containerd's `contentserver` + `metadata/content.go` behave.
 */
export function contentSuite(name: string, setup: () => Promise<BackendUnderTest>): void {
  describe(`Content service conformance: ${name}`, () => {
    let backend: BackendUnderTest;
    let h: Harness;
    beforeAll(async () => {
      backend = await setup();
      h = await startHarness(backend.config);
    });
    afterAll(async () => {
      await h?.close();
      await backend?.teardown();
    });

    it('writes in chunks, verifies size and digest, commits with labels, and reads back', async () => {
      const data = randomBytes(3 * (1 << 20) + 12345);
      const dgst = sha256(data);
      const s = new WriteStream(h.client, 'ns-a');
      const stat = await s.send({ action: WriteAction.STAT, ref: 'rt-1', total: data.length, expected: dgst });
      expect(stat.action).toBe(WriteAction.STAT);
      expect(stat.offset).toBe(0);
      expect(stat.total).toBe(data.length);
      expect(stat.startedAt).toBeInstanceOf(Date);
      let offset = 0;
      while (offset < data.length) {
        const piece = data.subarray(offset, offset + (1 << 20));
        const r = await s.send({ action: WriteAction.WRITE, offset, data: piece });
        offset += piece.length;
        expect(r.offset).toBe(offset);
        expect(r.digest).toBe(sha256(data.subarray(0, offset)));
      }
      const c = await s.send({
        action: WriteAction.COMMIT,
        offset,
        total: data.length,
        expected: dgst,
        labels: { a: 'b' },
      });
      s.end();
      expect(c.offset).toBe(data.length);
      expect(c.digest).toBe(dgst);

      const { info } = await call(h.client.info, h.client, { digest: dgst }, md('ns-a'));
      expect(info?.size).toBe(data.length);
      expect(info?.labels).toEqual({ a: 'b' });
      expect(info?.createdAt).toBeInstanceOf(Date);
      expect((await readAll(h.client, 'ns-a', dgst)).equals(data)).toBe(true);
      await failsWith(call(h.client.status, h.client, { ref: 'rt-1' }, md('ns-a')), status.NOT_FOUND);
      expect(await backend.committedBlobs()).toContain(dgst.slice('sha256:'.length));
    });

    it('reads a large blob back in 1 MiB messages, as containerd sends them, each with its offset', async () => {
      const data = randomBytes(2 * (1 << 20) + 777);
      const dgst = sha256(data);
      await writeBlob(h.client, 'ns-a', 'pieces-1', data, { expected: dgst });
      const parts = await collect(h.client.read({ digest: dgst, offset: 0, size: 0 }, md('ns-a')));
      expect(parts.map((p) => p.data.length)).toEqual([1 << 20, 1 << 20, 777]);
      expect(parts.map((p) => p.offset)).toEqual([0, 1 << 20, 2 << 20]);
      expect(Buffer.concat(parts.map((p) => p.data)).equals(data)).toBe(true);
    });

    it('reads ranges, clips at the end, and refuses offsets past the end', async () => {
      const data = randomBytes(100_000);
      const dgst = sha256(data);
      await writeBlob(h.client, 'ns-a', 'range-1', data, { expected: dgst });
      expect((await readAll(h.client, 'ns-a', dgst, 1000, 500)).equals(data.subarray(1000, 1500))).toBe(true);
      expect((await readAll(h.client, 'ns-a', dgst, 99_990, 500)).equals(data.subarray(99_990))).toBe(true);
      expect((await readAll(h.client, 'ns-a', dgst, 50_000)).equals(data.subarray(50_000))).toBe(true);
      expect((await readAll(h.client, 'ns-a', dgst, 100_000)).length).toBe(0);
      const parts = await collect(h.client.read({ digest: dgst, offset: 10, size: 0 }, md('ns-a')));
      expect(parts[0]?.offset).toBe(10);
      const past = await failsWith(readAll(h.client, 'ns-a', dgst, 100_001), status.OUT_OF_RANGE);
      expect(past.details).toBe('read past object length 100000 bytes');
      const missing = await failsWith(readAll(h.client, 'ns-a', sha256(Buffer.from('nope'))), status.NOT_FOUND);
      expect(missing.details).toBe(`content digest ${sha256(Buffer.from('nope'))}: not found`);
    });

    it('resumes an interrupted ingest from the Status offset, in this process and after a restart', async () => {
      const data = randomBytes(2 * (1 << 20) + 777);
      const dgst = sha256(data);
      const first = new WriteStream(h.client, 'ns-a');
      await first.send({ action: WriteAction.STAT, ref: 'resume-1', total: data.length, expected: dgst });
      await first.send({ action: WriteAction.WRITE, offset: 0, data: data.subarray(0, 1 << 20) });
      first.end();
      await waitFor(
        async () => (await call(h.client.status, h.client, { ref: 'resume-1' }, md('ns-a'))).status?.offset === 1 << 20,
      );

      // A second session resumes where the first stopped; the digest covers the earlier bytes.
      const second = new WriteStream(h.client, 'ns-a');
      const st = await second.send({ action: WriteAction.STAT, ref: 'resume-1', total: data.length, expected: dgst });
      expect(st.offset).toBe(1 << 20);
      expect(st.digest).toBe(sha256(data.subarray(0, 1 << 20)));
      const w = await second.send({
        action: WriteAction.WRITE,
        offset: 1 << 20,
        data: data.subarray(1 << 20, 2 << 20),
      });
      expect(w.offset).toBe(2 << 20);
      second.end();
      await waitFor(
        async () => (await call(h.client.status, h.client, { ref: 'resume-1' }, md('ns-a'))).status?.offset === 2 << 20,
      );

      // A new process knows nothing in memory: it re-hashes what the backend holds.
      h = await h.restart();
      const { status: s } = await call(h.client.status, h.client, { ref: 'resume-1' }, md('ns-a'));
      expect(s?.offset).toBe(2 << 20);
      expect(s?.total).toBe(data.length);
      expect(s?.expected).toBe(dgst);
      const done = await writeBlob(h.client, 'ns-a', 'resume-1', data, { expected: dgst });
      expect(done.digest).toBe(dgst);
      expect((await readAll(h.client, 'ns-a', dgst)).equals(data)).toBe(true);
    });

    it('restarts the ingest on a write at offset 0, and refuses a write away from the current offset', async () => {
      const s = new WriteStream(h.client, 'ns-a');
      await s.send({ action: WriteAction.STAT, ref: 'trunc-1' });
      await s.send({ action: WriteAction.WRITE, offset: 0, data: Buffer.from('garbage-garbage') });
      const again = await s.send({ action: WriteAction.WRITE, offset: 0, data: Buffer.from('hello') });
      expect(again.offset).toBe(5);
      expect(again.digest).toBe(sha256(Buffer.from('hello')));
      const bad = await failsWith(
        s.send({ action: WriteAction.WRITE, offset: 3, data: Buffer.from('x') }),
        status.OUT_OF_RANGE,
      );
      expect(bad.details).toBe('write @3 must occur at current offset 5');
      const s2 = new WriteStream(h.client, 'ns-a');
      await s2.send({ action: WriteAction.STAT, ref: 'trunc-1' });
      const c = await s2.send({
        action: WriteAction.COMMIT,
        offset: 5,
        total: 5,
        expected: sha256(Buffer.from('hello')),
      });
      s2.end();
      expect(c.digest).toBe(sha256(Buffer.from('hello')));
    });

    it('refuses a second writer on a locked ref with Unavailable', async () => {
      const s = new WriteStream(h.client, 'ns-a');
      await s.send({ action: WriteAction.STAT, ref: 'locked-1' });
      const other = new WriteStream(h.client, 'ns-a');
      const e = await failsWith(other.send({ action: WriteAction.STAT, ref: 'locked-1' }), status.UNAVAILABLE);
      expect(e.details).toMatch(/^ref locked-1 locked for [\d.]+s \(since .+\): unavailable$/);
      // The same ref in another namespace is a different ingest.
      const elsewhere = new WriteStream(h.client, 'ns-b');
      expect((await elsewhere.send({ action: WriteAction.STAT, ref: 'locked-1' })).offset).toBe(0);
      elsewhere.end();
      s.end();
      await call(h.client.abort, h.client, { ref: 'locked-1' }, md('ns-b'));
    });

    it('refuses a commit whose size or digest does not match, storing nothing', async () => {
      const data = Buffer.from('size and digest checks');
      const before = await backend.committedBlobs();
      const sizeErr = await failsWith(
        writeBlob(h.client, 'ns-a', 'mismatch-1', data, { total: data.length + 1 }),
        status.FAILED_PRECONDITION,
      );
      expect(sizeErr.details).toBe(
        `"mismatch-1" failed size validation: ${data.length} != ${data.length + 1}: failed precondition`,
      );
      const wrong = sha256(Buffer.from('something else'));
      const dErr = await failsWith(
        writeBlob(h.client, 'ns-a', 'mismatch-1', data, { expected: wrong }),
        status.FAILED_PRECONDITION,
      );
      expect(dErr.details).toBe(`unexpected commit digest ${sha256(data)}, expected ${wrong}: failed precondition`);
      await failsWith(call(h.client.info, h.client, { digest: sha256(data) }, md('ns-a')), status.NOT_FOUND);
      expect(await backend.committedBlobs()).toEqual(before);
      // The ingest is kept, as containerd keeps it, and can still be aborted.
      expect((await call(h.client.status, h.client, { ref: 'mismatch-1' }, md('ns-a'))).status?.offset).toBe(
        data.length,
      );
      await call(h.client.abort, h.client, { ref: 'mismatch-1' }, md('ns-a'));
      await failsWith(call(h.client.status, h.client, { ref: 'mismatch-1' }, md('ns-a')), status.NOT_FOUND);
    });

    it('answers AlreadyExists for content the namespace already has', async () => {
      const data = Buffer.from('exists already');
      const dgst = sha256(data);
      await writeBlob(h.client, 'ns-a', 'exists-1', data);
      const again = await failsWith(writeBlob(h.client, 'ns-a', 'exists-2', data), status.ALREADY_EXISTS);
      expect(again.details).toBe(`content ${dgst}: already exists`);
      await failsWith(call(h.client.status, h.client, { ref: 'exists-2' }, md('ns-a')), status.NOT_FOUND);
      const open = await failsWith(
        writeBlob(h.client, 'ns-a', 'exists-3', data, { expected: dgst }),
        status.ALREADY_EXISTS,
      );
      expect(open.details).toBe(`content ${dgst}: already exists`);
    });

    it('rejects malformed digests, unknown refs and a first message without ref with the right codes', async () => {
      const bad = 'sha256:abc';
      expect(
        (await failsWith(call(h.client.info, h.client, { digest: bad }, md('ns-a')), status.INVALID_ARGUMENT)).details,
      ).toBe('"sha256:abc" failed validation');
      expect(
        (await failsWith(call(h.client.delete, h.client, { digest: bad }, md('ns-a')), status.INVALID_ARGUMENT))
          .details,
      ).toBe('invalid checksum digest length');
      expect((await failsWith(readAll(h.client, 'ns-a', 'nocolon'), status.INVALID_ARGUMENT)).details).toBe(
        'nocolon: invalid checksum digest format',
      );
      await failsWith(
        call(h.client.info, h.client, { digest: 'md5:d41d8cd98f00b204e9800998ecf8427e' }, md('ns-a')),
        status.INVALID_ARGUMENT,
      );
      await failsWith(
        call(
          h.client.update,
          h.client,
          { info: { digest: 'sha256:ZZ', size: 0, labels: {} }, updateMask: [] },
          md('ns-a'),
        ),
        status.INVALID_ARGUMENT,
      );
      const st = await failsWith(call(h.client.status, h.client, { ref: 'no-such-ref' }, md('ns-a')), status.NOT_FOUND);
      expect(st.details).toBe('could not get status for ref "no-such-ref": reference no-such-ref: not found');
      await failsWith(call(h.client.abort, h.client, { ref: 'no-such-ref' }, md('ns-a')), status.NOT_FOUND);
      const noRef = new WriteStream(h.client, 'ns-a');
      expect(
        (await failsWith(noRef.send({ action: WriteAction.WRITE, data: Buffer.from('x') }), status.INVALID_ARGUMENT))
          .details,
      ).toBe('first message must have a reference');
      const badExpected = new WriteStream(h.client, 'ns-a');
      await failsWith(badExpected.send({ ref: 'bad-exp', expected: 'sha256:xyz' }), status.INVALID_ARGUMENT);
      await failsWith(call(h.client.status, h.client, { ref: 'bad-exp' }, md('ns-a')), status.NOT_FOUND);
      await failsWith(
        call(h.client.info, h.client, { digest: sha256(Buffer.from('x')) }, md()),
        status.FAILED_PRECONDITION,
      );
      await failsWith(collect(h.client.list({ filters: ['labels.a=='] }, md('ns-a'))), status.INVALID_ARGUMENT);
    });

    it('updates labels through field masks and lists with containerd filters', async () => {
      const data = Buffer.from('labelled');
      const dgst = sha256(data);
      await writeBlob(h.client, 'ns-l', 'lab-1', data, { labels: { keep: '1', drop: '2' } });
      const one = await call(
        h.client.update,
        h.client,
        { info: { digest: dgst, size: 0, labels: { added: 'x' } }, updateMask: ['labels.added', 'labels.drop'] },
        md('ns-l'),
      );
      expect(one.info?.labels).toEqual({ keep: '1', added: 'x' });
      const bad = await failsWith(
        call(
          h.client.update,
          h.client,
          { info: { digest: dgst, size: 0, labels: {} }, updateMask: ['size'] },
          md('ns-l'),
        ),
        status.INVALID_ARGUMENT,
      );
      expect(bad.details).toBe(`cannot update "size" field on content info "${dgst}": invalid argument`);
      const all = await call(
        h.client.update,
        h.client,
        { info: { digest: dgst, size: 0, labels: { only: 'y' } }, updateMask: [] },
        md('ns-l'),
      );
      expect(all.info?.labels).toEqual({ only: 'y' });
      const big = await failsWith(
        call(
          h.client.update,
          h.client,
          { info: { digest: dgst, size: 0, labels: { k: 'v'.repeat(5000) } }, updateMask: ['labels.k'] },
          md('ns-l'),
        ),
        status.INVALID_ARGUMENT,
      );
      expect(big.details).toContain('info.Labels: label key and value greater than maximum size (4096 bytes)');

      const other = Buffer.from('other');
      await writeBlob(h.client, 'ns-l', 'lab-2', other);
      const list = async (filters: string[]): Promise<string[]> =>
        (await collect(h.client.list({ filters }, md('ns-l')))).flatMap((r) => r.info.map((i) => i.digest)).sort();
      expect(await list([])).toEqual([dgst, sha256(other)].sort());
      expect(await list(['labels.only==y'])).toEqual([dgst]);
      expect(await list([`digest==${sha256(other)}`])).toEqual([sha256(other)]);
      expect(await list(['labels.only==y', `digest==${sha256(other)}`])).toEqual([dgst, sha256(other)].sort());
      expect(await list(['labels.nope'])).toEqual([]);
    });

    it('deletes per namespace and publishes /content/delete through the outbox', async () => {
      const data = Buffer.from('to be deleted');
      const dgst = sha256(data);
      await writeBlob(h.client, 'ns-d', 'del-1', data);
      const seen: Array<{ topic: string; namespace: string; digest: string }> = [];
      const ac = new AbortController();
      const sub = (async () => {
        for await (const e of h.bus.subscribe({ from: { kind: 'all' }, signal: ac.signal })) {
          if (e.topic === '/content/delete') {
            expect(e.event.typeUrl).toBe('containerd.events.ContentDelete');
            seen.push({ topic: e.topic, namespace: e.namespace, digest: ContentDelete.decode(e.event.value).digest });
          }
        }
      })();
      await call(h.client.delete, h.client, { digest: dgst }, md('ns-d'));
      await h.module.flushEvents();
      await waitFor(async () => seen.length > 0);
      ac.abort();
      await sub;
      expect(seen).toEqual([{ topic: '/content/delete', namespace: 'ns-d', digest: dgst }]);
      await failsWith(call(h.client.info, h.client, { digest: dgst }, md('ns-d')), status.NOT_FOUND);
      const again = await failsWith(call(h.client.delete, h.client, { digest: dgst }, md('ns-d')), status.NOT_FOUND);
      expect(again.details).toBe(`content digest ${dgst}: not found`);
    });

    it('isolates namespaces while sharing the bytes', async () => {
      // Small enough for the in-memory blob cache: read in A, the bytes are cached, yet B is refused.
      const data = randomBytes(200_000);
      const dgst = sha256(data);
      await writeBlob(h.client, 'iso-a', 'iso-1', data, { expected: dgst });
      expect((await readAll(h.client, 'iso-a', dgst)).equals(data)).toBe(true);
      await failsWith(call(h.client.info, h.client, { digest: dgst }, md('iso-b')), status.NOT_FOUND);
      await failsWith(readAll(h.client, 'iso-b', dgst), status.NOT_FOUND);
      expect((await collect(h.client.list({ filters: [] }, md('iso-b')))).flatMap((r) => r.info)).toEqual([]);
      expect(await h.module.namespaceUsage?.resourcesIn(backgroundContext(nopLogger), 'iso-a')).toEqual(['blobs']);
      expect(await h.module.namespaceUsage?.resourcesIn(backgroundContext(nopLogger), 'iso-b')).toEqual([]);

      // Namespace B already has the bytes through A: its ingest starts complete and commits without data.
      const s = new WriteStream(h.client, 'iso-b');
      const st = await s.send({ action: WriteAction.STAT, ref: 'iso-b-1', total: data.length, expected: dgst });
      expect(st.offset).toBe(data.length);
      const active = await call(h.client.listStatuses, h.client, { filters: ['ref==iso-b-1'] }, md('iso-b'));
      expect(active.statuses.map((x) => x.ref)).toEqual(['iso-b-1']);
      expect((await call(h.client.listStatuses, h.client, { filters: [''] }, md('iso-a'))).statuses).toEqual([]);
      const c = await s.send({
        action: WriteAction.COMMIT,
        offset: data.length,
        total: data.length,
        expected: dgst,
        labels: { b: '1' },
      });
      s.end();
      expect(c.digest).toBe(dgst);
      expect((await readAll(h.client, 'iso-b', dgst)).equals(data)).toBe(true);
      // Labels are per namespace.
      expect((await call(h.client.info, h.client, { digest: dgst }, md('iso-a'))).info?.labels).toEqual({});
      expect((await call(h.client.info, h.client, { digest: dgst }, md('iso-b'))).info?.labels).toEqual({ b: '1' });
      await call(h.client.delete, h.client, { digest: dgst }, md('iso-a'));
      expect((await readAll(h.client, 'iso-b', dgst)).equals(data)).toBe(true);
      await failsWith(readAll(h.client, 'iso-a', dgst), status.NOT_FOUND);
      expect((await readAll(h.client, 'iso-b', dgst, 1000, 10)).equals(data.subarray(1000, 1010))).toBe(true);
    });

    it('never shows a blob from a killed stream, and the ingest resumes from Status', async () => {
      const data = randomBytes(3 << 20);
      const dgst = sha256(data);
      const s = new WriteStream(h.client, 'ns-k');
      await s.send({ action: WriteAction.STAT, ref: 'killed-1', total: data.length, expected: dgst });
      await s.send({ action: WriteAction.WRITE, offset: 0, data: data.subarray(0, 1 << 20) });
      await s.send({ action: WriteAction.WRITE, offset: 1 << 20, data: data.subarray(1 << 20, 2 << 20) });
      s.cancel();
      await waitFor(async () => {
        const st = await call(h.client.listStatuses, h.client, { filters: [] }, md('ns-k'));
        return st.statuses.length === 1 && st.statuses[0]?.offset === 2 << 20;
      });
      await failsWith(call(h.client.info, h.client, { digest: dgst }, md('ns-k')), status.NOT_FOUND);
      expect(await backend.committedBlobs()).not.toContain(dgst.slice('sha256:'.length));
      const done = await writeBlob(h.client, 'ns-k', 'killed-1', data, { expected: dgst });
      expect(done.offset).toBe(data.length);
      expect((await readAll(h.client, 'ns-k', dgst)).equals(data)).toBe(true);
    });

    it('commits an empty blob', async () => {
      const empty = Buffer.alloc(0);
      const r = await writeBlob(h.client, 'ns-e', 'empty-1', empty, { expected: sha256(empty) });
      expect(r.digest).toBe(sha256(empty));
      expect((await call(h.client.info, h.client, { digest: sha256(empty) }, md('ns-e'))).info?.size).toBe(0);
      expect((await readAll(h.client, 'ns-e', sha256(empty))).length).toBe(0);
    });
  });
}

async function waitFor(check: () => Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
