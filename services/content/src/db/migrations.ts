import type { Migration } from '@berth/common/db';
import { outboxTableSql } from '@berth/common/outbox';

/** Channel of the blob-row notifications (payload `namespace/digest`); migration 2 spells it out. */
export const blobsChannel = 'berth_content_blobs';

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
  {
    version: 2,
    name: 'notify blob row changes',
    // A trigger rather than a NOTIFY in each write path: every writer of the table, a gc included, is seen.
    sql: `
      CREATE FUNCTION content.notify_blob_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP = 'DELETE' THEN
          PERFORM pg_notify('berth_content_blobs', OLD.namespace || '/' || OLD.digest);
        ELSE
          PERFORM pg_notify('berth_content_blobs', NEW.namespace || '/' || NEW.digest);
        END IF;
        RETURN NULL;
      END
      $$;
      CREATE TRIGGER blobs_notify AFTER INSERT OR UPDATE OR DELETE ON content.blobs
        FOR EACH ROW EXECUTE FUNCTION content.notify_blob_change();
    `,
  },
];
