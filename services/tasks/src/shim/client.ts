import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode, ServiceError, unavailable } from '@berth/common/errors';
import { defaultStallMs } from '@berth/common/stall';
import { type ExitNotice, onLines, type Reply, type Request, supervisorSocketName } from './protocol.js';

const shimMain = fileURLToPath(new URL('./main.js', import.meta.url));
/** A small heap for a small process: the supervisor holds a few objects per task. */
const supervisorFlags = ['--max-semi-space-size=1'];

export interface CallOptions {
  /** The request's cancellation: the call rejects with canceled when it aborts (the supervisor carries on). */
  readonly signal?: AbortSignal;
}

export interface ConnectOptions {
  /**
   * How long a call waits for the supervisor's answer before it fails with deadline_exceeded naming the
   * method (a stopped or wedged supervisor would otherwise hold Tasks.Create/Kill/Delete forever).
   * <= 0 or unset: the stall timeout's default.
   */
  readonly callTimeoutMs?: number;
}

/** The agent's end of one supervisor's socket. */
export interface ShimConnection {
  call<T>(req: Request, opts?: CallOptions): Promise<T>;
  /** Called for every exit the supervisor reports while connected. */
  onExit(fn: (n: ExitNotice) => void): void;
  /** Called once when the connection drops (the supervisor exited or was killed). */
  onClose(fn: () => void): void;
  close(): void;
}

export function connectShim(path: string, opts: ConnectOptions = {}): Promise<ShimConnection> {
  const timeoutMs = opts.callTimeoutMs !== undefined && opts.callTimeoutMs > 0 ? opts.callTimeoutMs : defaultStallMs;
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(wrap(socket, timeoutMs));
    });
  });
}

function wrap(socket: Socket, timeoutMs: number): ShimConnection {
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
    call<T>(req: Request, opts: CallOptions = {}): Promise<T> {
      if (closed) return Promise.reject(unavailable('task supervisor connection closed'));
      const { signal } = opts;
      if (signal?.aborted) return Promise.reject(canceled(req.method));
      const id = ++seq;
      return new Promise<T>((resolve, reject) => {
        // A late answer to a call that gave up finds no entry and is dropped.
        const settle = (): void => {
          pending.delete(id);
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
        };
        const onAbort = (): void => {
          settle();
          reject(canceled(req.method));
        };
        const timer = setTimeout(() => {
          settle();
          reject(
            new ServiceError(
              ErrorCode.DeadlineExceeded,
              `task supervisor did not answer ${req.method} within ${seconds(timeoutMs)}s: context deadline exceeded`,
            ),
          );
        }, timeoutMs);
        signal?.addEventListener('abort', onAbort, { once: true });
        pending.set(id, {
          resolve: (v) => {
            settle();
            resolve(v as T);
          },
          reject: (e) => {
            settle();
            reject(e);
          },
        });
        socket.write(`${JSON.stringify({ ...req, seq: id })}\n`);
      });
    },
    onExit: (fn) => exitFns.push(fn),
    onClose: (fn) => (closed ? fn() : closeFns.push(fn)),
    close: () => socket.destroy(),
  };
}

const canceled = (method: string): ServiceError =>
  new ServiceError(ErrorCode.Canceled, `task supervisor ${method}: context canceled`);

const seconds = (ms: number): string => (ms / 1000).toFixed(ms < 1000 ? 3 : 0);

/**
 * The agent's way to the node's supervisor (one process for every task of the node, see main.ts): it
 * starts the supervisor if none answers on `<dir>/supervisor.sock` and keeps one connection open ahead of
 * need, which a task's creation takes and binds with `init`. While the agent holds a connection, the
 * supervisor stays even with no task; once neither is left it exits.
 */
export interface SparePool {
  /** A connection ready for `init`; opens the next one in the background. */
  take(): Promise<ShimConnection>;
  /** Opens a connection now if none is ready (starting the supervisor if needed), so the first task does not wait. */
  warm(): void;
  /** Same as warm: `take` already opened the next connection. */
  replenish(): void;
  close(): Promise<void>;
}

export function createSparePool(dir: string, opts: ConnectOptions = {}): SparePool {
  const path = join(dir, supervisorSocketName);
  let next: Promise<ShimConnection> | undefined;
  let launching: Promise<ShimConnection> | undefined;
  let closed = false;
  const connection = async (): Promise<ShimConnection> => {
    try {
      return await connectShim(path, opts);
    } catch {
      /* no supervisor answers: start one */
    }
    if (launching) {
      await launching.catch(() => undefined);
      return connectShim(path, opts);
    }
    const mine = launchSupervisor(path, opts);
    launching = mine;
    try {
      return await mine;
    } finally {
      if (launching === mine) launching = undefined;
    }
  };
  const warm = (): void => {
    if (closed || next) return;
    const pending = connection();
    next = pending;
    const forget = (): void => {
      if (next === pending) next = undefined;
    };
    pending.then((c) => c.onClose(forget), forget);
  };
  return {
    async take() {
      const mine = next ?? connection();
      next = undefined;
      warm();
      return mine;
    },
    warm,
    replenish: warm,
    async close() {
      closed = true;
      const n = next;
      next = undefined;
      if (n) (await n.catch(() => undefined))?.close();
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

/** Starts the node's supervisor, detached in its own session, and answers the first connection to it. */
async function launchSupervisor(path: string, opts: ConnectOptions): Promise<ShimConnection> {
  const env = { ...process.env };
  // The agent's preloads and CA bundle only slow the supervisor's start; it needs neither.
  delete env.NODE_OPTIONS;
  delete env.NODE_EXTRA_CA_CERTS;
  // A terminal's pty master and stdin FIFO are read on libuv's thread pool, one blocked thread each: room
  // for many terminals before they would hold up the supervisor's file writes.
  env.UV_THREADPOOL_SIZE ??= '64';
  const child = spawn(process.execPath, [...supervisorFlags, shimMain, '--socket', path], {
    detached: true,
    stdio: 'ignore',
    env,
  });
  child.unref();
  let failure: ServiceError | undefined;
  child.once('error', (e) => (failure ??= unavailable('cannot start the task supervisor', e)));
  child.once('exit', (code) => (failure ??= unavailable(`task supervisor exited with ${code} before it was ready`)));
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await connectShim(path, opts);
    } catch (e) {
      if (failure || Date.now() > deadline) {
        if (child.pid !== undefined && alive(child.pid)) process.kill(child.pid, 'SIGKILL');
        throw failure ?? unavailable('task supervisor did not start', e);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
