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
  {
    version: 2,
    name: 'images, containers, leases',
    // Names and ids sort as bytes (COLLATE "C"), as containerd's bolt buckets list them.
    sql: `
      CREATE TABLE metadata.images (
        namespace           text NOT NULL REFERENCES metadata.namespaces (name),
        name                text COLLATE "C" NOT NULL,
        labels              jsonb NOT NULL DEFAULT '{}'::jsonb,
        target_media_type   text NOT NULL,
        target_digest       text NOT NULL,
        target_size         bigint NOT NULL,
        target_annotations  jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at          timestamptz NOT NULL,
        updated_at          timestamptz NOT NULL,
        PRIMARY KEY (namespace, name)
      );
      CREATE TABLE metadata.containers (
        namespace             text NOT NULL REFERENCES metadata.namespaces (name),
        id                    text COLLATE "C" NOT NULL,
        labels                jsonb NOT NULL DEFAULT '{}'::jsonb,
        image                 text NOT NULL DEFAULT '',
        runtime_name          text NOT NULL,
        runtime_options_type  text,
        runtime_options       bytea,
        spec_type             text NOT NULL,
        spec                  bytea NOT NULL,
        snapshotter           text NOT NULL DEFAULT '',
        snapshot_key          text NOT NULL DEFAULT '',
        extensions            jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at            timestamptz NOT NULL,
        updated_at            timestamptz NOT NULL,
        PRIMARY KEY (namespace, id)
      );
      CREATE TABLE metadata.leases (
        namespace   text NOT NULL REFERENCES metadata.namespaces (name) ON DELETE CASCADE,
        id          text COLLATE "C" NOT NULL,
        labels      jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at  timestamptz NOT NULL,
        PRIMARY KEY (namespace, id)
      );
      CREATE TABLE metadata.lease_resources (
        namespace   text NOT NULL,
        lease       text COLLATE "C" NOT NULL,
        kind        text COLLATE "C" NOT NULL,
        snapshotter text COLLATE "C" NOT NULL DEFAULT '',
        id          text COLLATE "C" NOT NULL,
        PRIMARY KEY (namespace, lease, kind, snapshotter, id),
        FOREIGN KEY (namespace, lease) REFERENCES metadata.leases (namespace, id) ON DELETE CASCADE
      );
      -- Version 1 wrote namespace labels through postgres.js as a JSON string inside jsonb; unwrap them.
      UPDATE metadata.namespaces SET labels = (labels #>> '{}')::jsonb WHERE jsonb_typeof(labels) = 'string';
      -- outboxTableSql gained outbox_source after version 1 had been applied in some databases.
      CREATE TABLE IF NOT EXISTS metadata.outbox_source (id text PRIMARY KEY);
      INSERT INTO metadata.outbox_source (id)
        SELECT gen_random_uuid()::text WHERE NOT EXISTS (SELECT 1 FROM metadata.outbox_source);
    `,
  },
];
