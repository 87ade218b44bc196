import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Db, openDb } from '@berth/common/db';
import { createInProcessBus } from '@berth/common/event-bus';
import { type TempDir, tempDir } from '@berth/testing/tmp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Harness, md, sha256, startHarness, writeBlob } from './harness.js';

/** A Db that records the statements sent through it (transactions included). */
function counting(db: Db): { db: Db; statements: string[] } {
  const statements: string[] = [];
  const record = (text: string): void => {
    statements.push(text.replace(/\s+/g, ' ').trim());
  };
  const wrap = <Q extends Pick<Db, 'query' | 'exec'>>(q: Q): Q => ({
    ...q,
    query: (text: string, params?: readonly unknown[]) => {
      record(text);
      return q.query(text, params);
    },
  });
  return {
    statements,
    db: { ...wrap(db), transaction: (fn) => db.transaction((tx) => fn(wrap(tx))) },
  };
}

/**
 * What the content calls of an image pull cost the database (ctr: a Write per blob, with the expected digest,
 * then Info and Update of its labels). Each statement is a call into PGlite on the daemon's one thread.
 */
describe('content statements per call', () => {
  let h: Harness;
  let blobs: TempDir;
  let statements: string[];
  beforeAll(async () => {
    blobs = tempDir('berth-content-statements-');
    const c = counting(await openDb('pglite://memory'));
    statements = c.statements;
    h = await startHarness(
      { kind: 'fs', root: blobs.path },
      { db: c.db, bus: createInProcessBus(), dir: mkdtempSync(join(tmpdir(), 'berth-content-st-')) },
    );
  });
  afterAll(async () => {
    await h?.close();
    await blobs?.remove();
  });

  const blobLookups = (): string[] => statements.filter((s) => /^SELECT .* FROM content\.blobs/.test(s));

  it('a Write of a new blob looks it up once (open and commit), and records it in one statement', async () => {
    const data = randomBytes(1000);
    statements.length = 0;
    await writeBlob(h.client, 'ns', 'ref-new', data, { expected: sha256(data) });
    expect(blobLookups()).toHaveLength(1);
    expect(statements.filter((s) => /content\.blobs/.test(s) && /INSERT/.test(s))).toHaveLength(1);
    expect(statements.filter((s) => /DELETE FROM content\.ingests/.test(s) && !/INSERT/.test(s))).toEqual([]);
  });

  it('Info of a blob found missing asks the database once', async () => {
    const digest = sha256(randomBytes(10));
    statements.length = 0;
    for (let i = 0; i < 3; i++) await call(h.client.info, h.client, { digest }, md('ns')).catch(() => undefined);
    expect(blobLookups()).toHaveLength(1);
  });

  it('an Update of labels is one statement', async () => {
    const data = randomBytes(100);
    await writeBlob(h.client, 'ns', 'ref-upd', data, { labels: { a: '1' } });
    statements.length = 0;
    const res = await call(
      h.client.update,
      h.client,
      { info: { digest: sha256(data), size: 0, labels: { b: '2' } }, updateMask: ['labels.b'] },
      md('ns'),
    );
    expect(res.info?.labels).toEqual({ a: '1', b: '2' });
    expect(statements).toHaveLength(1);
  });
});
