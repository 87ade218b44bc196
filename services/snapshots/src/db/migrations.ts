import type { Migration } from '@berth/common/db';
import { outboxTableSql } from '@berth/common/outbox';

/** The `snapshots` schema, in order; see schema.md. */
export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: 'snapshot records and outbox',
    sql: `
      CREATE TABLE snapshots.snapshots (
        id           bigserial PRIMARY KEY,
        node         text NOT NULL,
        snapshotter  text NOT NULL,
        namespace    text NOT NULL,
        key          text NOT NULL,
        kind         text NOT NULL CHECK (kind IN ('view', 'active', 'committed')),
        parent_id    bigint REFERENCES snapshots.snapshots (id),
        labels       jsonb NOT NULL DEFAULT '{}'::jsonb,
        size         bigint NOT NULL DEFAULT 0,
        inodes       bigint NOT NULL DEFAULT 0,
        created_at   timestamptz NOT NULL DEFAULT now(),
        updated_at   timestamptz NOT NULL DEFAULT now(),
        UNIQUE (node, snapshotter, namespace, key)
      );
      CREATE INDEX snapshots_parent_idx ON snapshots.snapshots (parent_id);
      CREATE INDEX snapshots_namespace_idx ON snapshots.snapshots (namespace);
      ${outboxTableSql('snapshots')}
    `,
  },
  {
    version: 2,
    name: 'node names',
    sql: `
      -- Which node (its name) holds each node identity's records: lets a node say where a snapshot it lacks lives.
      CREATE TABLE snapshots.nodes (
        node     text PRIMARY KEY,
        name     text NOT NULL,
        seen_at  timestamptz NOT NULL DEFAULT now()
      );
    `,
  },
  {
    version: 3,
    name: 'records by key across nodes',
    sql: `
      -- The collector removes a key's records on every node at once: (namespace, snapshotter, key) without the
      -- node, which the unique index leads with. It also serves what the namespace index did.
      CREATE INDEX snapshots_key_idx ON snapshots.snapshots (namespace, snapshotter, key);
      DROP INDEX snapshots.snapshots_namespace_idx;
    `,
  },
];
