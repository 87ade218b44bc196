import { execFile } from 'node:child_process';
import { access, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import postgres from 'postgres';
import { alreadyExists, ErrorCode, ServiceError } from './errors.js';

/**
 * One small interface over postgres.js (a real server) and PGlite (Postgres compiled to wasm, embedded),
 * so a service's SQL and migrations run unchanged on both. Parameters are positional (`$1`).
 */
export type Row = Record<string, unknown>;

export interface Queryable {
  /** One parameterized statement; returns its rows. */
  query<T extends Row = Row>(text: string, params?: readonly unknown[]): Promise<T[]>;
  /** Several statements without parameters (migrations). */
  exec(text: string): Promise<void>;
  /**
   * A statement that returns no rows and whose outcome the transaction does not wait for: it may be sent with
   * the transaction's next statement or its commit, which then fails if it failed. Only some transactions
   * have it (PGlite's, where each statement sent is a call on the one thread): use `deferOrQuery`.
   */
  defer?(text: string, params?: readonly unknown[]): Promise<void>;
  /**
   * True when every statement of the process runs in one database session, one transaction at a time
   * (PGlite): transactions never overlap, so nothing session-scoped, an advisory lock say, can conflict.
   */
  readonly serialized?: boolean;
}

/** `q.defer` where `q` has it, else the statement now. */
export async function deferOrQuery(q: Queryable, text: string, params: readonly unknown[] = []): Promise<void> {
  if (q.defer) await q.defer(text, params);
  else await q.query(text, params);
}

export interface Db extends Queryable {
  readonly kind: 'postgres' | 'pglite';
  /** Runs `fn` in a transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /**
   * Subscribes to `NOTIFY` on `channel` (a lowercase identifier). `onNotify` gets each payload, after the
   * notifying transaction commits and never for one that rolls back. `onReset` runs each time the
   * subscription is (re)established, the first time before the promise resolves: notifications sent while
   * it was down are lost, so anything kept coherent by them must be dropped there. Resolves an unlisten.
   */
  listen(channel: string, onNotify: (payload: string) => void, onReset: () => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

/**
 * Opens a database: `postgres://…`/`postgresql://…` for a server, `pglite:///abs/dir` for an embedded
 * database kept in a directory, `pglite://memory` for a throwaway one.
 */
export async function openDb(url: string): Promise<Db> {
  if (url.startsWith('postgres://') || url.startsWith('postgresql://')) return openPostgres(url);
  if (url.startsWith('pglite://')) {
    const where = url.slice('pglite://'.length);
    return openPglite(where === 'memory' || where === '' ? undefined : where);
  }
  throw new ServiceError(ErrorCode.InvalidArgument, `unsupported database url ${JSON.stringify(url)}`);
}

function openPostgres(url: string): Db {
  const sql = postgres(url, {
    max: 10,
    onnotice: () => undefined,
    // int8 as JS number: sizes and offsets stay far below 2^53, and both backends then return the same type.
    types: { bigint: { to: 20, from: [20], serialize: (v: number) => String(v), parse: (v: string) => Number(v) } },
  });
  const wrapTx = (tx: postgres.TransactionSql): Queryable => ({
    query: async <T extends Row>(text: string, params: readonly unknown[] = []) =>
      translate(() => tx.unsafe(text, params as postgres.ParameterOrJSON<never>[]) as unknown as Promise<T[]>),
    exec: async (text) => {
      await translate(() => tx.unsafe(text));
    },
  });
  return {
    kind: 'postgres',
    query: async <T extends Row>(text: string, params: readonly unknown[] = []) =>
      translate(() => sql.unsafe(text, params as postgres.ParameterOrJSON<never>[]) as unknown as Promise<T[]>),
    exec: async (text) => {
      await translate(() => sql.unsafe(text));
    },
    transaction: async <T>(fn: (tx: Queryable) => Promise<T>) =>
      translate(() => sql.begin((tx) => fn(wrapTx(tx))) as Promise<T>),
    // postgres.js listens on a connection of its own and re-listens whenever it drops, calling onReset each time.
    listen: async (channel, onNotify, onReset) => {
      let listening = true;
      const { unlisten } = await sql.listen(
        channel,
        (payload) => listening && onNotify(payload),
        () => listening && onReset(),
      );
      return async () => {
        // After a reconnect postgres.js holds a copy of our listener that its unlisten no longer finds.
        listening = false;
        await unlisten();
      };
    },
    close: () => sql.end({ timeout: 5 }),
  };
}

async function openPglite(dataDir: string | undefined): Promise<Db> {
  const { PGlite } = await import('@electric-sql/pglite');
  // Loaded with PGlite only: a process on a server database never needs either.
  const { pgliteSession } = await import('./pglite-session.js');
  // Compiling Postgres's wasm takes seconds: on V8's threads, while a new database is made in a child.
  const wasm = readFile(join(dirname(pgliteEntry()), 'pglite.wasm')).then((bytes) => wasmApi.compile(bytes));
  wasm.catch(() => undefined);
  if (dataDir !== undefined) await initPgliteDir(dataDir);
  const pg = await PGlite.create(dataDir, {
    startParams: pgliteStartParams(PGlite.defaultStartParams),
    pgliteWasmModule: await wasm,
  });
  const session = pgliteSession(pg);
  // PGlite is one session: serialize transactions so two requests never interleave inside one.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const run = queue.then(fn, fn);
    queue = run.catch(() => undefined);
    return run;
  };
  const queryable = (inTransaction: boolean): Queryable => ({
    serialized: true,
    query: async <T extends Row>(text: string, params: readonly unknown[] = []) =>
      translate(() => session.query<T>(text, params, inTransaction)),
    exec: async (text) => {
      await translate(() => session.exec(text, inTransaction));
    },
  });
  const direct = queryable(false);
  const inTransaction: Queryable = {
    ...queryable(true),
    defer: async (text, params = []) => translate(() => session.defer(text, params)),
  };
  const transaction = async <T>(fn: (tx: Queryable) => Promise<T>): Promise<T> => {
    session.begin();
    let result: T;
    try {
      result = await fn(inTransaction);
    } catch (e) {
      await session.rollback();
      throw e;
    }
    // A statement of the transaction failed and `fn` went on regardless: Postgres rolls it back.
    if ((await session.commit()) === 'ROLLBACK') throw new Error('transaction rolled back: a statement in it failed');
    return result;
  };
  return {
    kind: 'pglite',
    serialized: true,
    query: (text, params) => serial(() => direct.query(text, params)),
    exec: (text) => serial(() => direct.exec(text)),
    transaction: <T>(fn: (tx: Queryable) => Promise<T>) => serial(() => translate(() => transaction(fn))),
    // One in-process session: once listening it never drops, so onReset runs only this once.
    listen: async (channel, onNotify, onReset) => {
      const unlisten = await serial(() => pg.listen(channel, onNotify));
      onReset();
      return () => serial(() => unlisten());
    },
    close: () => pg.close(),
  };
}

/**
 * PGlite's start parameters, sized for Berth's databases (a few MB) rather than for a server. Postgres's shared
 * memory is resident from the first second: PGlite's wasm memory never gives a page back, and Postgres
 * initializes the whole segment at start. At the defaults it is 145 MB (128 MB of buffers; the rest scales with
 * max_connections: lock tables, process slots, async I/O handles, predicate locks); with 2 MB of buffers and
 * 2 connection slots it is 6 MB, which puts the whole wasm memory of an idle daemon at ~11 MB instead of ~29 MB
 * at 16 MB / 100 connections. A buffer miss costs a read from the page cache, not the disk; PGlite is one
 * session (single-user Postgres), so 2 slots are what it can use. wal_buffers follows: 1/32 of shared_buffers,
 * at least 64 kB.
 */
export const PGLITE_SHARED_BUFFERS = '2MB';
export const PGLITE_MAX_CONNECTIONS = 2;
function pgliteStartParams(defaults: readonly string[]): string[] {
  return [
    ...defaults,
    '-c',
    `shared_buffers=${PGLITE_SHARED_BUFFERS}`,
    '-c',
    `max_connections=${PGLITE_MAX_CONNECTIONS}`,
  ];
}

/**
 * Creates a new PGlite database directory in a child process. PGlite runs initdb in the calling process,
 * and what it allocates there (a second wasm instance, copies of the heap: ~600 MB) stays resident long
 * after it is garbage; a child gives it all back when it exits. An existing directory is left as it is.
 */
async function initPgliteDir(dataDir: string): Promise<void> {
  if (await exists(join(dataDir, 'PG_VERSION'))) return;
  const pglite = pgliteEntry();
  // initdb runs most of Postgres's code once: optimizing it (TurboFan, on the other core) would be wasted.
  const initFlags = ['--liftoff-only'];
  const init =
    'const { PGlite } = await import(process.argv[1]); await (await PGlite.create(process.argv[2])).close();';
  await new Promise<void>((resolve, reject) => {
    execFile(
      process.execPath,
      [...initFlags, '--input-type=module', '-e', init, pglite, dataDir],
      (err, _stdout, stderr) =>
        err
          ? reject(new Error(`creating the PGlite database in ${dataDir} failed: ${stderr || err.message}`))
          : resolve(),
    );
  });
}

/** Node's WebAssembly global, which the compiler's libraries here do not declare. */
type PgliteWasmModule = NonNullable<import('@electric-sql/pglite').PGliteOptions['pgliteWasmModule']>;
const wasmApi = (globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<PgliteWasmModule> } })
  .WebAssembly;

/** The file `import('@electric-sql/pglite')` loads; its wasm lies beside it. */
function pgliteEntry(): string {
  return createRequire(import.meta.url).resolve('@electric-sql/pglite');
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Postgres error codes that carry meaning for callers, translated at this edge. */
async function translate<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof ServiceError) throw e;
    const code = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
    if (code === '23505') throw alreadyExists(detailOf(e), e);
    if (code === '40001' || code === '40P01')
      throw new ServiceError(ErrorCode.Aborted, 'transaction conflict, retry', { cause: e });
    // Class 22, data exception: a value from the request the database cannot hold (a NUL character in a
    // string, a number out of range). Bad input, not a server fault.
    if (typeof code === 'string' && code.startsWith('22'))
      throw new ServiceError(ErrorCode.InvalidArgument, `invalid value: ${detailOf(e)}`, { cause: e });
    throw e;
  }
}

/**
 * Whether `e` is Postgres's foreign key violation (23503). Left untranslated by the database edge, whose
 * meaning depends on the statement: the caller says what it means (a parent gone, a child still there).
 */
export function isForeignKeyViolation(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: unknown }).code === '23503';
}

function detailOf(e: unknown): string {
  return e instanceof Error ? e.message : 'unique violation';
}

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/**
 * Applies, in order and once each, the migrations of one service's schema. Concurrent replicas are
 * serialized by an advisory lock keyed by the schema name.
 */
export async function migrate(db: Db, schema: string, migrations: readonly Migration[]): Promise<number[]> {
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) throw new Error(`bad schema name ${schema}`);
  const applied: number[] = [];
  await db.transaction(async (tx) => {
    await tx.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`berth.migrate.${schema}`]);
    await tx.exec(`CREATE SCHEMA IF NOT EXISTS ${schema};
      CREATE TABLE IF NOT EXISTS ${schema}.schema_migrations (
        version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const done = new Set(
      (await tx.query<{ version: number }>(`SELECT version FROM ${schema}.schema_migrations`)).map((r) => r.version),
    );
    for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
      if (done.has(m.version)) continue;
      await tx.exec(m.sql);
      await tx.query(`INSERT INTO ${schema}.schema_migrations (version, name) VALUES ($1, $2)`, [m.version, m.name]);
      applied.push(m.version);
    }
  });
  return applied;
}

/** For `ServiceModule.notReady`: a reason while the database does not answer, undefined when it does. */
export async function databaseNotReady(db: Queryable): Promise<string | undefined> {
  try {
    await db.query('SELECT 1');
    return undefined;
  } catch (e) {
    return `database: ${e instanceof Error ? e.message : String(e)}`;
  }
}

/**
 * Reads a large result a page at a time (keyset pagination: `fetch` continues after the last row it was
 * given), letting the event loop turn between pages: PGlite answers each query in one synchronous call, and
 * tens of thousands of rows in one query would stall every request in the process for that long.
 */
export async function readPages<R>(
  fetch: (after: R | undefined, limit: number) => Promise<R[]>,
  pageSize = 5_000,
): Promise<R[]> {
  const out: R[] = [];
  let after: R | undefined;
  for (;;) {
    const page = await fetch(after, pageSize);
    for (const r of page) out.push(r);
    if (page.length < pageSize) return out;
    after = page[page.length - 1];
    await new Promise((resolve) => setImmediate(resolve));
  }
}
