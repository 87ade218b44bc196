import type { Migration } from '@berth/common/db';
import { outboxTableSql } from '@berth/common/outbox';

/**
 * Channels of the row notifications of migration 3, which spells them out: payload `namespace/name` (images),
 * `namespace/id` (containers), `name` (namespaces); empty when every row may have changed.
 */
export const rowChannels = {
  namespaces: 'berth_metadata_namespaces',
  images: 'berth_metadata_images',
  containers: 'berth_metadata_containers',
} as const;

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
  {
    version: 3,
    name: 'notify namespace, image and container row changes',
    // Triggers rather than a NOTIFY in each write path: every writer of the tables, a gc included, is seen.
    // An update notifies the old and the new key; Postgres folds a repeated payload within a transaction.
    sql: `
      CREATE FUNCTION metadata.notify_key(channel text, key text) RETURNS void LANGUAGE sql AS $$
        -- A payload must stay under 8000 bytes; an empty one tells listeners to drop every row.
        SELECT pg_notify(channel, CASE WHEN octet_length(key) < 7900 THEN key ELSE '' END)
      $$;
      CREATE FUNCTION metadata.notify_namespace_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP <> 'INSERT' THEN PERFORM metadata.notify_key('berth_metadata_namespaces', OLD.name); END IF;
        IF TG_OP <> 'DELETE' THEN PERFORM metadata.notify_key('berth_metadata_namespaces', NEW.name); END IF;
        RETURN NULL;
      END
      $$;
      CREATE FUNCTION metadata.notify_image_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP <> 'INSERT' THEN
          PERFORM metadata.notify_key('berth_metadata_images', OLD.namespace || '/' || OLD.name);
        END IF;
        IF TG_OP <> 'DELETE' THEN
          PERFORM metadata.notify_key('berth_metadata_images', NEW.namespace || '/' || NEW.name);
        END IF;
        RETURN NULL;
      END
      $$;
      CREATE FUNCTION metadata.notify_container_change() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP <> 'INSERT' THEN
          PERFORM metadata.notify_key('berth_metadata_containers', OLD.namespace || '/' || OLD.id);
        END IF;
        IF TG_OP <> 'DELETE' THEN
          PERFORM metadata.notify_key('berth_metadata_containers', NEW.namespace || '/' || NEW.id);
        END IF;
        RETURN NULL;
      END
      $$;
      -- TRUNCATE fires no row trigger: it tells listeners to drop everything.
      CREATE FUNCTION metadata.notify_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        PERFORM pg_notify(TG_ARGV[0], '');
        RETURN NULL;
      END
      $$;
      CREATE TRIGGER namespaces_notify AFTER INSERT OR UPDATE OR DELETE ON metadata.namespaces
        FOR EACH ROW EXECUTE FUNCTION metadata.notify_namespace_change();
      CREATE TRIGGER images_notify AFTER INSERT OR UPDATE OR DELETE ON metadata.images
        FOR EACH ROW EXECUTE FUNCTION metadata.notify_image_change();
      CREATE TRIGGER containers_notify AFTER INSERT OR UPDATE OR DELETE ON metadata.containers
        FOR EACH ROW EXECUTE FUNCTION metadata.notify_container_change();
      CREATE TRIGGER namespaces_truncate AFTER TRUNCATE ON metadata.namespaces
        FOR EACH STATEMENT EXECUTE FUNCTION metadata.notify_truncate('berth_metadata_namespaces');
      CREATE TRIGGER images_truncate AFTER TRUNCATE ON metadata.images
        FOR EACH STATEMENT EXECUTE FUNCTION metadata.notify_truncate('berth_metadata_images');
      CREATE TRIGGER containers_truncate AFTER TRUNCATE ON metadata.containers
        FOR EACH STATEMENT EXECUTE FUNCTION metadata.notify_truncate('berth_metadata_containers');
    `,
  },
];
