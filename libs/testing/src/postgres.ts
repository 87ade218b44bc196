/**
 * PostgreSQL for tests: every `usePostgres()` call gets its own fresh, empty database
 * (`berth_t_<random>`), so test files never see each other's tables.
 *
 * The server is the first that works of:
 *  1. testcontainers `postgres:15-alpine` (only where a container runtime works; shared per process);
 *  2. $BERTH_TEST_POSTGRES_URL: a URL to an existing database on a server where that user may
 *     CREATE DATABASE, e.g. `postgres://postgres:secret@db:5432/postgres`; if set but unusable,
 *     usePostgres() throws instead of falling back;
 *  3. the server on 127.0.0.1:5432 as user `postgres` (database `postgres`), if it lets us create a
 *     database (skipped when BERTH_TEST_LOOPBACK=0);
 *  4. a private cluster started as a child process on a free port (see `startPostgresServer`),
 *     shared by the callers in this process and stopped when the last one drops its database.
 */

import { spawnSync } from 'node:child_process';
import postgres from 'postgres';
import type { ServerSource } from './attempts.js';
import { Attempts, describe } from './attempts.js';
import { onProcessExit } from './cleanup.js';
import { containerRuntime, sharedContainer } from './containers.js';
import { loopbackAllowed } from './loopback.js';
import { startPostgresServer } from './postgres-server.js';
import { refCounted } from './ref-counted.js';
import { uniqueName } from './unique-name.js';

export interface TestPostgres {
  /** URL of the fresh, empty database created for this caller (postgres.js / libpq format). */
  readonly url: string;
  /** Name of that database. */
  readonly database: string;
  readonly source: ServerSource;
  /**
   * Drops the database (terminating connections still open to it) and stops the server if this
   * kit started it and no other caller in the process still uses it. Idempotent.
   */
  drop(): Promise<void>;
}

const LOOPBACK_URL = 'postgres://postgres@127.0.0.1:5432/postgres';

const spawned = refCounted(startPostgresServer, (s) => s.stop());

function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

function admin(url: string, connectTimeoutSeconds: number): postgres.Sql {
  return postgres(url, { max: 1, connect_timeout: connectTimeoutSeconds, onnotice: () => {}, idle_timeout: 5 });
}

async function createDatabase(adminUrl: string, connectTimeoutSeconds: number): Promise<string> {
  const name = uniqueName('berth_t_');
  const sql = admin(adminUrl, connectTimeoutSeconds);
  try {
    await sql.unsafe(`CREATE DATABASE "${name}"`);
  } finally {
    await sql.end({ timeout: 5 });
  }
  return name;
}

async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const sql = admin(adminUrl, 10);
  try {
    await sql.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Drops the database at process exit too (with psql, if present) when a test forgot drop(). */
function dropAtExit(adminUrl: string, name: string): () => void {
  return onProcessExit(() => {
    spawnSync('psql', [adminUrl, '-q', '-c', `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`], {
      stdio: 'ignore',
      timeout: 5000,
    });
  });
}

function testPostgres(
  adminUrl: string,
  database: string,
  source: ServerSource,
  release: () => Promise<void>,
): TestPostgres {
  const unregister = dropAtExit(adminUrl, database);
  let dropped = false;
  return {
    url: withDatabase(adminUrl, database),
    database,
    source,
    async drop() {
      if (dropped) return;
      dropped = true;
      try {
        await dropDatabase(adminUrl, database);
      } finally {
        unregister();
        await release();
      }
    },
  };
}

/** A fresh, empty database for this caller; see the module doc for where the server comes from. */
export async function usePostgres(): Promise<TestPostgres> {
  const attempts = new Attempts('PostgreSQL');

  const rt = await containerRuntime();
  if (rt.available) {
    try {
      const lease = await sharedContainer('postgres', (tc) =>
        new tc.GenericContainer('postgres:15-alpine')
          .withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
          .withCommand(['postgres', '-c', 'fsync=off', '-c', 'max_connections=300'])
          .withExposedPorts(5432)
          .withWaitStrategy(tc.Wait.forLogMessage(/database system is ready to accept connections/, 2))
          .start(),
      );
      const c = lease.value;
      const adminUrl = `postgres://postgres@${c.getHost()}:${c.getMappedPort(5432)}/postgres`;
      try {
        return testPostgres(adminUrl, await createDatabase(adminUrl, 10), 'container', () => lease.release());
      } catch (err) {
        await lease.release();
        throw err;
      }
    } catch (err) {
      attempts.note('testcontainers postgres:15-alpine', err);
    }
  } else {
    attempts.note('testcontainers', rt.reason);
  }

  const envUrl = process.env['BERTH_TEST_POSTGRES_URL'];
  if (envUrl) {
    try {
      return testPostgres(envUrl, await createDatabase(envUrl, 10), 'env', async () => {});
    } catch (err) {
      throw new Error(`BERTH_TEST_POSTGRES_URL is set but no database could be created there: ${describe(err)}`, {
        cause: err,
      });
    }
  }
  attempts.note('$BERTH_TEST_POSTGRES_URL', 'not set');

  if (loopbackAllowed()) {
    try {
      return testPostgres(LOOPBACK_URL, await createDatabase(LOOPBACK_URL, 2), 'loopback', async () => {});
    } catch (err) {
      attempts.note(`loopback ${LOOPBACK_URL} (CREATE DATABASE)`, err);
    }
  } else {
    attempts.note(`loopback ${LOOPBACK_URL}`, 'skipped (BERTH_TEST_LOOPBACK=0)');
  }

  try {
    const lease = await spawned.acquire();
    try {
      const adminUrl = lease.value.adminUrl;
      return testPostgres(adminUrl, await createDatabase(adminUrl, 10), 'spawned', () => lease.release());
    } catch (err) {
      await lease.release();
      throw err;
    }
  } catch (err) {
    attempts.note('spawn a private cluster (initdb + pg_ctl start) on a free port', err);
  }
  return attempts.fail();
}
