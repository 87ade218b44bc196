import { type Migration, migrate, openDb } from '@berth/common/db';
import { migrations as contentMigrations } from '@berth/content';
import { migrations as metadataMigrations } from '@berth/metadata';
import { migrations as snapshotsMigrations } from '@berth/snapshots';

/** Every service schema that lives in the cluster's Postgres, in the order `berthd migrate` applies them. */
export const schemas: ReadonlyArray<readonly [string, readonly Migration[]]> = [
  ['metadata', metadataMigrations],
  ['content', contentMigrations],
  ['snapshots', snapshotsMigrations],
];

/**
 * Applies every schema's pending migrations to the database at `url` and returns the versions applied per
 * schema (empty when already current). For a one-shot deploy step that runs before the services start;
 * the services apply the same migrations themselves, so this only moves the work (and its failure) earlier.
 */
export async function migrateAll(url: string): Promise<Record<string, number[]>> {
  const db = await openDb(url);
  try {
    const applied: Record<string, number[]> = {};
    for (const [schema, migrations] of schemas) applied[schema] = await migrate(db, schema, migrations);
    return applied;
  } finally {
    await db.close();
  }
}
