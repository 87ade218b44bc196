import type { Migration } from '@berth/common/db';
import { outboxTableSql } from '@berth/common/outbox';

/** The `metadata` schema, in order. Every migration has a test in migrations.test.ts; see schema.md. */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'namespaces and outbox',
    sql: `
      CREATE TABLE metadata.namespaces (
        name        text PRIMARY KEY,
        labels      jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now()
      );
      ${outboxTableSql('metadata')}
    `,
  },
];
