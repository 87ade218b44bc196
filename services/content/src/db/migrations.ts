import type { Migration } from '@berth/common/db';
import { outboxTableSql } from '@berth/common/outbox';

/** The `content` schema, in order; see schema.md. */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'blobs, ingests and outbox',
    sql: `
      CREATE TABLE content.blobs (
        namespace   text NOT NULL,
        digest      text NOT NULL,
        size        bigint NOT NULL,
        labels      jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at  timestamptz NOT NULL,
        updated_at  timestamptz NOT NULL,
        PRIMARY KEY (namespace, digest)
      );
      CREATE INDEX blobs_digest ON content.blobs (digest);
      CREATE TABLE content.ingests (
        namespace        text NOT NULL,
        ref              text NOT NULL,
        bref             text NOT NULL UNIQUE,
        total            bigint NOT NULL DEFAULT 0,
        expected         text NOT NULL DEFAULT '',
        started_at       timestamptz NOT NULL,
        updated_at       timestamptz NOT NULL,
        expires_at       timestamptz,
        lock_owner       text,
        lock_expires_at  timestamptz,
        PRIMARY KEY (namespace, ref)
      );
      ${outboxTableSql('content')}
    `,
  },
];
