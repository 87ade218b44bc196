import type { PGlite } from '@electric-sql/pglite';
import { protocol } from '@electric-sql/pglite';

/**
 * Berth's statements on a PGlite session, each sent in one call into Postgres's wasm.
 *
 * PGlite's own `query` sends the extended protocol one message per call (Parse, Describe, Bind, Describe,
 * Execute, Sync) and parses and plans the text again every time; its `transaction` and `exec` send a Sync
 * after each command. Measured on this project's statements, a query took 250–340 µs that way against
 * 65–110 µs here, and a transaction's BEGIN and COMMIT about 110 µs against ~40 µs. PGlite runs on the
 * process's one thread and an image pull makes about a hundred statements, so this was most of the time the
 * database took from every request.
 *
 * A parameterized statement is prepared once per SQL text (a named statement), then run as Bind, Execute and
 * Sync in one message. Values are serialized and rows parsed with PGlite's own serializers and parsers,
 * chosen by the types Postgres describes, exactly as `query` does. A statement that is not plain DML runs
 * unprepared and, since it may change what the prepared ones describe, forgets them all, as `exec` does.
 *
 * A transaction costs no call of its own: BEGIN goes ahead of its first statement, and a statement whose
 * result nobody reads (an outbox row) waits to go with the next one or with the COMMIT. A write transaction
 * that took four calls into the wasm (BEGIN, change, outbox, COMMIT) takes two; each call is ~0.1-0.4 ms of the
 * main thread whatever it carries.
 *
 * The caller sends one statement at a time (the Db serializes everything on the session).
 */
export interface PgliteSession {
  /**
   * One parameterized statement. `inTransaction` defers PGlite's file sync to the commit, as PGlite does for
   * the statements of its transactions.
   */
  query<T extends Row>(text: string, params: readonly unknown[], inTransaction: boolean): Promise<T[]>;
  /** Commands without parameters (the simple protocol; several may be given). Resolves the last command's tag. */
  exec(text: string, inTransaction: boolean): Promise<string | undefined>;
  /** Opens a transaction; BEGIN is sent with its first statement. */
  begin(): void;
  /**
   * A statement of the open transaction that returns no rows and whose outcome nobody waits for: sent with the
   * transaction's next statement or its COMMIT, whose call then reports its failure.
   */
  defer(text: string, params: readonly unknown[]): Promise<void>;
  /** Ends the open transaction: COMMIT, or ROLLBACK when a statement failed. Resolves the command's tag. */
  commit(): Promise<string | undefined>;
  /** Rolls the open transaction back (nothing to send when none of it was sent). */
  rollback(): Promise<void>;
  /** Statements prepared now. */
  readonly prepared: number;
}

interface Prepared {
  readonly name: string;
  /** The type of each parameter, as Postgres inferred it. */
  readonly params: readonly number[];
  /** The result columns; empty when the statement returns no rows. */
  readonly columns: ReadonlyArray<{ readonly name: string; readonly type: number }>;
}

/** A result row by column name (db.ts's Row; not imported, which would make a cycle). */
type Row = Record<string, unknown>;
type Message = { readonly name: string };
type ParameterDescription = Message & { readonly dataTypeIDs: number[] };
type RowDescription = Message & { readonly fields: ReadonlyArray<{ name: string; dataTypeID: number }> };
type DataRow = Message & { readonly fields: ReadonlyArray<string | null> };
type CommandComplete = Message & { readonly text: string };

/** Statements worth keeping prepared: data reads and changes, whose plans Postgres revalidates by itself. */
const dml = /^\s*(select|insert|update|delete|with|values)\b/i;

/** SQLSTATEs of a prepared statement a schema change made unusable, or one the session no longer has. */
const stalePlan = new Set(['0A000', '26000']);

const { serialize } = protocol;

/** bytea's type OID. */
const BYTEA = 17;

/**
 * bytea in Postgres's hex format (`\x0a1b…`), as PGlite's own bytea parser and serializer read and write it,
 * through Buffer's hex codec: PGlite's go byte by byte through closures (`parseInt` of each pair, a padded
 * string per byte), 0.3–0.5 ms for a container's 5 KiB spec, on every Containers.Create and first Get.
 */
export function parseBytea(text: string): Uint8Array {
  const out = new Uint8Array((text.length - 2) >>> 1);
  Buffer.from(out.buffer, out.byteOffset, out.length).write(text.slice(2), 'hex');
  return out;
}

export function serializeBytea(value: Uint8Array): string {
  return `\\x${Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('hex')}`;
}

/** Drives `pg` (see PgliteSession); keeps at most `max` statements prepared, the least recently used going first. */
export function pgliteSession(pg: PGlite, max = 512): PgliteSession {
  /** By SQL text, least recently used first. */
  const prepared = new Map<string, Prepared>();
  /** Names forgotten but still prepared on the session: closed ahead of the next statement outside a transaction. */
  const closing: string[] = [];
  let counter = 0;
  /** Messages of the open transaction not sent yet (its BEGIN, deferred statements): they go ahead of the next. */
  let ahead: Uint8Array[] = [];
  /** 'begun': BEGIN is in `ahead`; 'open': it was sent. */
  let transaction: 'none' | 'begun' | 'open' = 'none';
  /** The SQL of the deferred statements in `ahead`. */
  let deferred: string[] = [];

  const send = async (parts: Uint8Array[], syncToFs: boolean): Promise<Message[]> => {
    const all = ahead.length === 0 ? parts : [...ahead, ...parts];
    const texts = deferred;
    ahead = [];
    deferred = [];
    if (transaction === 'begun') transaction = 'open';
    try {
      return (await pg.execProtocolStream(all.length === 1 && all[0] ? all[0] : Buffer.concat(all), {
        syncToFs,
      })) as Message[];
    } catch (e) {
      // A deferred statement prepared before a schema change fails here: prepared afresh next time.
      if (stalePlan.has((e as { code?: string }).code ?? '')) for (const text of texts) forget(text);
      throw e;
    }
  };

  const prepare = async (text: string, name: string): Promise<Prepared> => {
    const messages = await send(
      [serialize.parse({ name, text, types: [] }), serialize.describe({ type: 'S', name }), serialize.sync()],
      false,
    );
    const params = messages.find((m): m is ParameterDescription => m.name === 'parameterDescription');
    const rows = messages.find((m): m is RowDescription => m.name === 'rowDescription');
    return {
      name,
      params: params?.dataTypeIDs ?? [],
      columns: (rows?.fields ?? []).map((f) => ({ name: f.name, type: f.dataTypeID })),
    };
  };

  const values = (p: Prepared, params: readonly unknown[]): Array<string | null> =>
    params.map((v, i) => {
      if (v === null || v === undefined) return null;
      if (p.params[i] === BYTEA && v instanceof Uint8Array) return serializeBytea(v);
      const serializer = pg.serializers[p.params[i] ?? 0];
      return serializer ? serializer(v) : String(v);
    });

  const rowsOf = <T extends Row>(p: Prepared, messages: readonly Message[]): T[] => {
    const rows: T[] = [];
    for (const m of messages) {
      if (m.name !== 'dataRow') continue;
      const fields = (m as DataRow).fields;
      const row: Row = {};
      p.columns.forEach((column, i) => {
        const raw = fields[i] ?? null;
        if (raw === null) row[column.name] = null;
        else if (column.type === BYTEA) row[column.name] = parseBytea(raw);
        else {
          const parse = pg.parsers[column.type];
          row[column.name] = parse ? parse(raw, column.type) : raw;
        }
      });
      rows.push(row as T);
    }
    return rows;
  };

  const forget = (text: string): void => {
    const p = prepared.get(text);
    if (!p) return;
    prepared.delete(text);
    closing.push(p.name);
  };

  const forgetAll = (): void => {
    for (const p of prepared.values()) closing.push(p.name);
    prepared.clear();
  };

  // Closing an unknown statement is no error, but in a failed transaction every command but its end is refused.
  const closes = (inTransaction: boolean): Uint8Array[] =>
    inTransaction || closing.length === 0
      ? []
      : [...closing.splice(0).map((name) => serialize.close({ type: 'S', name })), serialize.sync()];

  const lookup = async (text: string): Promise<Prepared> => {
    const hit = prepared.get(text);
    if (hit) {
      prepared.delete(text);
      prepared.set(text, hit);
      return hit;
    }
    const p = await prepare(text, `berth_${++counter}`);
    prepared.set(text, p);
    const oldest = prepared.size > max ? prepared.keys().next() : undefined;
    if (oldest && !oldest.done) forget(oldest.value);
    return p;
  };

  const bindExecute = (p: Prepared, params: readonly unknown[]): Uint8Array[] => [
    serialize.bind({ statement: p.name, values: values(p, params) }),
    serialize.execute({}),
    serialize.sync(),
  ];

  const run = async <T extends Row>(text: string, params: readonly unknown[], inTransaction: boolean): Promise<T[]> => {
    const once = !dml.test(text);
    const p = once ? await prepare(text, '') : await lookup(text);
    try {
      const messages = await send([...closes(inTransaction), ...bindExecute(p, params)], !inTransaction);
      return rowsOf<T>(p, messages);
    } finally {
      if (once) forgetAll();
    }
  };

  return {
    async query<T extends Row>(text: string, params: readonly unknown[], inTransaction: boolean): Promise<T[]> {
      try {
        return await run<T>(text, params, inTransaction);
      } catch (e) {
        const code = (e as { code?: unknown }).code;
        if (typeof code !== 'string' || !stalePlan.has(code) || !prepared.has(text)) throw e;
        // Prepared before a schema change that altered its result: prepare it again. Inside a transaction the
        // failure has aborted it; the fresh statement serves the next one.
        forget(text);
        if (inTransaction) throw e;
        return run<T>(text, params, inTransaction);
      }
    },

    async exec(text: string, inTransaction: boolean): Promise<string | undefined> {
      try {
        const messages = await send([...closes(inTransaction), serialize.query(text)], !inTransaction);
        const done = messages.filter((m): m is CommandComplete => m.name === 'commandComplete');
        return done[done.length - 1]?.text.split(' ')[0];
      } finally {
        if (!/^\s*(begin|commit|rollback)\s*$/i.test(text)) forgetAll();
      }
    },

    begin() {
      if (transaction !== 'none') throw new Error('pglite session: a transaction is already open');
      ahead = [serialize.query('BEGIN')];
      transaction = 'begun';
    },

    async defer(text, params) {
      if (transaction === 'none') throw new Error('pglite session: defer outside a transaction');
      if (!dml.test(text)) throw new Error('pglite session: only a data statement can be deferred');
      const p = await lookup(text);
      if (p.columns.length > 0)
        throw new Error(`pglite session: only a statement that returns no rows can be deferred: ${text}`);
      ahead.push(...bindExecute(p, params));
      deferred.push(text);
    },

    async commit() {
      const begun = transaction === 'begun' && deferred.length === 0;
      if (begun) ahead = []; // BEGIN alone: nothing to commit
      try {
        return begun ? 'COMMIT' : await this.exec('COMMIT', false);
      } finally {
        transaction = 'none';
      }
    },

    async rollback() {
      const sent = transaction === 'open';
      ahead = [];
      deferred = [];
      transaction = 'none';
      if (sent) await this.exec('ROLLBACK', false);
    },

    get prepared() {
      return prepared.size;
    },
  };
}
