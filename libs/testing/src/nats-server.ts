/**
 * A private nats-server child process with JetStream and its own store directory, for tests that
 * need to control the server (outage tests: stop or kill it, restart it on the same port with the
 * same store, check nothing was lost).
 *
 * Binary: $BERTH_TEST_NATS_SERVER, else `nats-server` found in /usr/sbin, /usr/local/bin, /usr/bin
 * or $PATH. Logs go to `<dir>/nats-server.log`; start failures include its tail.
 */

import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { accessSync, closeSync, constants, mkdirSync, openSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { killAtExit } from './cleanup.js';
import { logTail } from './log-tail.js';
import { natsInfo } from './nats-info.js';
import { freePort } from './ports.js';
import { tempDir } from './tmp.js';
import { uniqueName } from './unique-name.js';

export interface StartNatsOptions {
  /** Port to listen on (127.0.0.1). Default: a free port. */
  readonly port?: number;
  /** Enable JetStream (`-js`, store in the temp dir). Default true. */
  readonly jetstream?: boolean;
  /** Extra nats-server arguments. */
  readonly args?: readonly string[];
  /** How long to wait for the server to accept clients. Default 20 000 ms. */
  readonly readyTimeoutMs?: number;
}

export interface NatsProcess {
  /** `nats://127.0.0.1:<port>`; stays the same across restart(). */
  readonly url: string;
  readonly port: number;
  /** JetStream store directory; kept across stop()/kill()/restart(). */
  readonly storeDir: string;
  /** The server's combined stdout/stderr (appended to across restarts). */
  readonly logFile: string;
  /** PID of the running server, undefined while stopped. */
  readonly pid: number | undefined;
  readonly running: boolean;
  /** Graceful stop (SIGTERM; SIGKILL after 10 s). The store is kept; restart() brings it back. */
  stop(): Promise<void>;
  /** Crash (SIGKILL) without any shutdown work. The store is kept; restart() brings it back. */
  kill(): Promise<void>;
  /** Stops the server if running, then starts it again on the same port with the same store. */
  restart(): Promise<void>;
  /** Stops the server and deletes its temp dir (store and log). Idempotent. */
  dispose(): Promise<void>;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Path of the nats-server binary, or undefined. */
export function findNatsServerBinary(): string | undefined {
  const fromEnv = process.env['BERTH_TEST_NATS_SERVER'];
  if (fromEnv) return fromEnv;
  const dirs = ['/usr/sbin', '/usr/local/bin', '/usr/bin', ...(process.env['PATH'] ?? '').split(delimiter)];
  for (const d of dirs) {
    if (d && isExecutable(join(d, 'nats-server'))) return join(d, 'nats-server');
  }
  return undefined;
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Spawns a private nats-server on 127.0.0.1 (JetStream on, store in a fresh temp dir) and waits
 * until it answers with an INFO line naming it (and with JetStream enabled). Always spawns; for
 * "any NATS will do" use `useNats()`.
 */
export async function startNatsServer(opts: StartNatsOptions = {}): Promise<NatsProcess> {
  const bin = findNatsServerBinary();
  if (bin === undefined) {
    throw new Error(
      'startNatsServer: no nats-server binary (looked at $BERTH_TEST_NATS_SERVER, /usr/sbin, /usr/local/bin, /usr/bin, $PATH); ' +
        'install it (Debian: apt-get install -y nats-server)',
    );
  }
  const jetstream = opts.jetstream ?? true;
  const readyTimeoutMs = opts.readyTimeoutMs ?? 20_000;
  const dir = tempDir('berth-nats-');
  const storeDir = join(dir.path, 'store');
  mkdirSync(storeDir);
  const logFile = join(dir.path, 'nats-server.log');
  const name = uniqueName('berth_test_');

  let child: ChildProcess | undefined;
  let port = opts.port ?? (await freePort());

  const launch = async (): Promise<void> => {
    const args = ['-a', '127.0.0.1', '-p', String(port), '-n', name];
    if (jetstream) args.push('-js', '-sd', storeDir);
    args.push(...(opts.args ?? []));
    const fd = openSync(logFile, 'a');
    let proc: ChildProcess;
    try {
      proc = spawn(bin, args, { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
    const spawned = new Promise<void>((resolve, reject) => {
      proc.once('spawn', resolve);
      proc.once('error', reject);
    });
    await spawned;
    child = proc;
    const unregisterKill = killAtExit(proc.pid ?? -1, 'SIGKILL');
    proc.once('exit', () => {
      unregisterKill();
      if (child === proc) child = undefined;
    });

    const deadline = Date.now() + readyTimeoutMs;
    let last = 'not probed yet';
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        throw new Error(
          `nats-server exited during start (code ${proc.exitCode}, signal ${proc.signalCode}): ${bin} ${args.join(' ')}\n` +
            (await logTail(logFile)),
        );
      }
      try {
        const info = await natsInfo('127.0.0.1', port, 500);
        if (info.server_name !== name) {
          last = `port ${port} is answered by another NATS server (${info.server_name ?? info.server_id})`;
        } else if (jetstream && info.jetstream !== true) {
          last = 'INFO says jetstream is not enabled yet';
        } else {
          return;
        }
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      }
      if (Date.now() > deadline) {
        proc.kill('SIGKILL');
        throw new Error(
          `nats-server not ready on 127.0.0.1:${port} after ${readyTimeoutMs} ms (last probe: ${last})\n` +
            (await logTail(logFile)),
        );
      }
      await sleep(25);
    }
  };

  const halt = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child;
    if (proc === undefined) return;
    proc.kill(signal);
    if (!(await waitExit(proc, 10_000))) {
      proc.kill('SIGKILL');
      await waitExit(proc, 5_000);
    }
  };

  // First start: a port picked by freePort() can be taken meanwhile; retry on a new one.
  for (let attempt = 1; ; attempt++) {
    try {
      await launch();
      break;
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      const portClash = /address already in use|another NATS server/i.test(msg);
      if (!portClash || opts.port !== undefined || attempt >= 3) {
        await halt('SIGKILL');
        await dir.remove();
        throw err;
      }
      port = await freePort();
    }
  }

  let disposed = false;
  return {
    get url() {
      return `nats://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    storeDir,
    logFile,
    get pid() {
      return child?.pid;
    },
    get running() {
      return child !== undefined;
    },
    stop: () => halt('SIGTERM'),
    kill: () => halt('SIGKILL'),
    async restart() {
      if (disposed) throw new Error('NatsProcess.restart(): already disposed');
      await halt('SIGTERM');
      await launch();
    },
    async dispose() {
      if (disposed) return;
      disposed = true;
      await halt('SIGTERM');
      await dir.remove();
    },
  };
}
