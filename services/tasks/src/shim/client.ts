import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ErrorCode, ServiceError, unavailable } from '@berth/common/errors';
import { type ExitNotice, onLines, type Reply, type Request } from './protocol.js';

const shimMain = fileURLToPath(new URL('./main.js', import.meta.url));

/** The agent's end of one supervisor's socket. */
export interface ShimConnection {
  call<T>(req: Request): Promise<T>;
  /** Called for every exit the supervisor reports while connected. */
  onExit(fn: (n: ExitNotice) => void): void;
  /** Called once when the connection drops (the supervisor exited or was killed). */
  onClose(fn: () => void): void;
  close(): void;
}

export function connectShim(path: string): Promise<ShimConnection> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(wrap(socket));
    });
  });
}

function wrap(socket: Socket): ShimConnection {
  let seq = 0;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  const exitFns: Array<(n: ExitNotice) => void> = [];
  const closeFns: Array<() => void> = [];
  let closed = false;
  onLines(socket, (line) => {
    const msg = JSON.parse(line) as Reply | ExitNotice;
    if ('event' in msg) {
      for (const fn of exitFns) fn(msg);
      return;
    }
    const p = pending.get(msg.seq);
    pending.delete(msg.seq);
    if (!p) return;
    if (msg.ok) p.resolve(msg.result);
    else p.reject(new ServiceError(msg.error.code as ErrorCode, msg.error.message));
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    closed = true;
    for (const p of pending.values()) p.reject(unavailable('task supervisor connection closed'));
    pending.clear();
    for (const fn of closeFns.splice(0)) fn();
  });
  return {
    call<T>(req: Request): Promise<T> {
      if (closed) return Promise.reject(unavailable('task supervisor connection closed'));
      const id = ++seq;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        socket.write(`${JSON.stringify({ ...req, seq: id })}\n`);
      });
    },
    onExit: (fn) => exitFns.push(fn),
    onClose: (fn) => (closed ? fn() : closeFns.push(fn)),
    close: () => socket.destroy(),
  };
}

/**
 * Keeps one supervisor started ahead of need, so a task's creation does not wait for a Node process to
 * boot (tens of milliseconds). A spare exits by itself if the agent that started it goes away unclaimed.
 */
export interface SparePool {
  /** A supervisor ready for `init`; starts the next spare in the background. */
  take(): Promise<ShimConnection>;
  /** Starts a spare now if none is ready, so the first task does not wait for one. */
  warm(): void;
  /**
   * Starts the next spare, unless one is waiting, through the launcher: a spawn forks the process that
   * makes it and blocks its event loop meanwhile, which for the agent (hundreds of MB) costs tens of
   * milliseconds on a busy node, for a small supervisor process a few. Falls back to the agent.
   */
  replenish(): void;
  close(): Promise<void>;
}

interface Spare {
  /** Undefined until known, or when the spawn itself failed (the connection then rejects). */
  pid: number | undefined;
  readonly connection: Promise<ShimConnection>;
}

export function createSparePool(dir: string): SparePool {
  let next: Spare | undefined;
  let closed = false;
  /**
   * A supervisor that is never handed a task and only starts spares. Not a task's supervisor: when one of
   * those exits, whatever it started is re-parented to the nearest subreaper above it, which would not
   * reap it. It exits with the agent's connection, like any unclaimed spare.
   */
  let launcher: Promise<ShimConnection> | undefined;
  const launcherConnection = (): Promise<ShimConnection> => {
    if (launcher) return launcher;
    const l = startSpare(dir);
    renice(l.pid, 0);
    const connection = l.connection;
    launcher = connection;
    const forget = (): void => {
      if (launcher === connection) launcher = undefined;
    };
    connection.then((c) => c.onClose(forget), forget);
    return connection;
  };
  return {
    async take() {
      const mine = next ?? startSpare(dir);
      next = undefined;
      // Claimed: from now on a task waits for it, so it must not boot (or answer `init`) at the lowest priority.
      renice(mine.pid, 0);
      return mine.connection;
    },
    warm() {
      if (closed) return;
      next ??= startSpare(dir);
      void launcherConnection().catch(() => undefined);
    },
    replenish() {
      if (closed || next) return;
      const path = spareSocket(dir);
      const entry: { pid: number | undefined } = { pid: undefined };
      const connection = launcherConnection()
        .then((l) => l.call<{ pid: number }>({ method: 'spawnSpare', socket: path }))
        .then(
          ({ pid }) => {
            entry.pid = pid;
            if (next !== spare) renice(pid, 0);
            return connectSpare(path, () => !alive(pid), pid);
          },
          () => {
            // No launcher (it could not start, or went away): the agent starts the spare itself.
            const own = startSpare(dir, path);
            entry.pid = own.pid;
            if (next !== spare) renice(own.pid, 0);
            return own.connection;
          },
        );
      const spare: Spare = Object.assign(entry, { connection });
      connection.catch(() => {
        if (next === spare) next = undefined;
      });
      next = spare;
    },
    async close() {
      closed = true;
      const n = next;
      next = undefined;
      const l = launcher;
      launcher = undefined;
      for (const c of [n?.connection, l]) if (c) (await c.catch(() => undefined))?.close();
    },
  };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const spareSocket = (dir: string): string => join(dir, `spare-${randomBytes(6).toString('hex')}.sock`);

function renice(pid: number | undefined, priority: number): void {
  if (pid === undefined) return;
  try {
    setPriority(pid, priority);
  } catch {
    /* it already exited; waiting for its connection reports that */
  }
}

function startSpare(dir: string, path = spareSocket(dir)): Spare {
  const env = { ...process.env };
  // The agent's preloads and CA bundle only slow the supervisor's start; it needs neither.
  delete env.NODE_OPTIONS;
  delete env.NODE_EXTRA_CA_CERTS;
  const child = spawn(process.execPath, [shimMain, '--socket', path], { detached: true, stdio: 'ignore', env });
  child.unref();
  // Booting a spare must not slow the task being created right now (2 cores): it starts at the lowest
  // priority and takes the normal one back when it is claimed.
  renice(child.pid, 19);
  let failure: ServiceError | undefined;
  child.once('error', (e) => (failure ??= unavailable('cannot start a task supervisor', e)));
  child.once('exit', (code) => (failure ??= unavailable(`task supervisor exited with ${code} before it was ready`)));
  const connection = connectSpare(
    path,
    () => failure !== undefined,
    child.pid,
    () => failure,
  );
  connection.catch(() => undefined);
  return { pid: child.pid, connection };
}

/** Connects to a starting spare at `path`; gives up when it is gone or after 10 s. */
async function connectSpare(
  path: string,
  gone: () => boolean,
  pid: number | undefined,
  why: () => ServiceError | undefined = () => undefined,
): Promise<ShimConnection> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await connectShim(path);
    } catch (e) {
      if (gone() || Date.now() > deadline) {
        if (pid !== undefined && alive(pid)) process.kill(pid, 'SIGKILL');
        await rm(path, { force: true });
        throw (
          why() ??
          unavailable(gone() ? 'task supervisor exited before it was ready' : 'task supervisor did not start', e)
        );
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
