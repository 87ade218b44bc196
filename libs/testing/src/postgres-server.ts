/**
 * A private PostgreSQL cluster as a local child process: initdb into a temp dir, then
 * `pg_ctl start` on 127.0.0.1:<free port> with fsync=off (data is throw-away).
 *
 * PostgreSQL refuses to run as root, so when the test process is root the binaries run as the
 * `postgres` OS user through `runuser` and the temp dir is chowned to it.
 * Binaries: $BERTH_TEST_PG_BIN (a directory), else the newest /usr/lib/postgresql/<v>/bin, else $PATH.
 * Logs go to `<dir>/postgres.log`; start failures include its tail.
 */
import { execFile } from 'node:child_process';
import { chownSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { killAtExit } from './cleanup.js';
import { logTail } from './log-tail.js';
import { freePort } from './ports.js';
import { tempDir } from './tmp.js';

const execFileP = promisify(execFile);

export interface PostgresServer {
  readonly host: string;
  readonly port: number;
  /** Superuser URL to the `postgres` database (trust auth, user `postgres`). */
  readonly adminUrl: string;
  /** Temp dir holding `data/` (the cluster), the unix socket and `postgres.log`. */
  readonly dir: string;
  readonly logFile: string;
  /** Immediate shutdown, then deletes the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Directory with initdb/pg_ctl, or '' to rely on $PATH. */
function pgBinDir(): string {
  const fromEnv = process.env['BERTH_TEST_PG_BIN'];
  if (fromEnv) return fromEnv;
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root)
      .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
      .sort((a, b) => Number(b) - Number(a));
    const newest = versions[0];
    if (newest !== undefined) return join(root, newest, 'bin');
  }
  return '';
}

interface ExecError extends Error {
  stdout?: string;
  stderr?: string;
}

function output(err: unknown): string {
  const e = err as ExecError;
  return [e.message, e.stdout, e.stderr].filter((s) => s?.trim()).join('\n');
}

async function osUserIds(user: string): Promise<{ uid: number; gid: number }> {
  const uid = Number((await execFileP('id', ['-u', user])).stdout.trim());
  const gid = Number((await execFileP('id', ['-g', user])).stdout.trim());
  return { uid, gid };
}

/** Starts a fresh private PostgreSQL server; see the module doc. */
export async function startPostgresServer(): Promise<PostgresServer> {
  const binDir = pgBinDir();
  const tool = (name: string): string => (binDir ? join(binDir, name) : name);
  const asRoot = process.getuid?.() === 0;
  const run = (cmd: string, args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> =>
    asRoot
      ? execFileP('runuser', ['-u', 'postgres', '--', cmd, ...args], { timeout: timeoutMs })
      : execFileP(cmd, args, { timeout: timeoutMs });

  const dir = tempDir('berth-pg-');
  const dataDir = join(dir.path, 'data');
  const logFile = join(dir.path, 'postgres.log');
  try {
    if (asRoot) {
      let ids: { uid: number; gid: number };
      try {
        ids = await osUserIds('postgres');
      } catch (err) {
        throw new Error(`running as root, and there is no 'postgres' OS user to run PostgreSQL as: ${output(err)}`);
      }
      chownSync(dir.path, ids.uid, ids.gid);
    }

    try {
      await run(
        tool('initdb'),
        ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'],
        120_000,
      );
    } catch (err) {
      throw new Error(
        `initdb failed (${tool('initdb')}${asRoot ? ', as user postgres via runuser' : ''}):\n${output(err)}`,
      );
    }

    // A port picked by freePort() may be taken before the postmaster binds it: retry on a new one.
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const serverOpts = [
        '-c listen_addresses=127.0.0.1',
        `-p ${port}`,
        `-k ${dir.path}`,
        '-c fsync=off',
        '-c synchronous_commit=off',
        '-c full_page_writes=off',
        '-c max_connections=300',
      ].join(' ');
      try {
        await run(tool('pg_ctl'), ['-D', dataDir, '-l', logFile, '-o', serverOpts, '-w', '-t', '60', 'start'], 90_000);
      } catch (err) {
        const tail = await logTail(logFile);
        if (attempt < 3 && /could not bind|already in use/i.test(tail)) continue;
        throw new Error(`pg_ctl start failed on 127.0.0.1:${port}:\n${output(err)}\n${tail}`);
      }

      const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      // SIGQUIT = immediate shutdown: the postmaster takes its backends down with it.
      const unregisterKill = killAtExit(pid, 'SIGQUIT');
      let stopped = false;
      return {
        host: '127.0.0.1',
        port,
        adminUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
        dir: dir.path,
        logFile,
        async stop() {
          if (stopped) return;
          stopped = true;
          try {
            await run(tool('pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', '-t', '30', 'stop'], 40_000);
          } catch {
            try {
              process.kill(pid, 'SIGQUIT');
            } catch {
              // Already gone.
            }
          }
          unregisterKill();
          await dir.remove();
        },
      };
    }
  } catch (err) {
    await dir.remove();
    throw err;
  }
}
