/**
 * `berthd migrate`: the one-shot deploy step (compose's `migrate` service, the systemd berth-migrate unit)
 * that applies every service's schema before the services start.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { usePostgres } from '@berth/testing/postgres';
import postgres from 'postgres';
import { describe, expect, it } from 'vitest';
import { repoRoot } from './src/engine.js';

const run = promisify(execFile);
const berthd = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run('node', [join(repoRoot, 'apps/berthd/dist/main.js'), ...args], {
    env: { ...process.env, BERTH_POSTGRES: '', ...env },
    timeout: 60_000,
  });

describe('berthd migrate', () => {
  it('applies the metadata, content and snapshots schemas once, and then nothing', async () => {
    const pg = await usePostgres();
    const sql = postgres(pg.url, { max: 1, onnotice: () => undefined });
    try {
      const first = await berthd(['migrate', '--postgres', pg.url]);
      const applied = JSON.parse(first.stderr.trim().split('\n').at(-1) ?? '{}').applied as Record<string, number[]>;
      expect(Object.keys(applied).sort()).toEqual(['content', 'metadata', 'snapshots']);
      for (const [schema, versions] of Object.entries(applied)) {
        expect(versions.length, schema).toBeGreaterThan(0);
        const rows = await sql.unsafe(`SELECT version FROM ${schema}.schema_migrations ORDER BY version`);
        expect(
          rows.map((r) => r['version']),
          schema,
        ).toEqual(versions);
      }
      const tables = await sql`SELECT table_schema, table_name FROM information_schema.tables
        WHERE table_schema IN ('metadata', 'content', 'snapshots') AND table_name <> 'schema_migrations'`;
      expect(new Set(tables.map((t) => t['table_schema']))).toEqual(new Set(['metadata', 'content', 'snapshots']));

      // BERTH_POSTGRES as well as --postgres; and a current database gets no migration.
      const again = await berthd(['migrate'], { BERTH_POSTGRES: pg.url });
      expect(JSON.parse(again.stderr.trim().split('\n').at(-1) ?? '{}').applied).toEqual({
        metadata: [],
        content: [],
        snapshots: [],
      });
    } finally {
      await sql.end();
      await pg.drop();
    }
  });

  it('refuses to run without a Postgres URL, and with extra arguments', async () => {
    await expect(berthd(['migrate'])).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/migrate needs --postgres/),
    });
    await expect(berthd(['migrate', 'now', '--postgres', 'postgres://x/y'])).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringMatching(/bad arguments/),
    });
  });
});
