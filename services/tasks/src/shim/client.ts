import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ErrorCode, ServiceError, unavailable } from '@berth/common/errors';
import type { ExitNotice, Reply, Request } from './protocol.js';

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
  let buf = '';
  let closed = false;
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line === '') continue;
      const msg = JSON.parse(line) as Reply | ExitNotice;
      if ('event' in msg) {
        for (const fn of exitFns) fn(msg);
        continue;
      }
      const p = pending.get(msg.seq);
      pending.delete(msg.seq);
      if (!p) continue;
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new ServiceError(msg.error.code as ErrorCode, msg.error.message));
    }
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
  close(): Promise<void>;
}

export function createSparePool(dir: string): SparePool {
  let next: Promise<ShimConnection> | undefined;
  let closed = false;
  const startOne = (): Promise<ShimConnection> => {
    const p = startSpare(dir);
    p.catch(() => undefined);
    return p;
  };
  return {
    async take() {
      const mine = next ?? startOne();
      next = closed ? undefined : startOne();
      return mine;
    },
    warm() {
      if (!closed) next ??= startOne();
    },
    async close() {
      closed = true;
      const n = next;
      next = undefined;
      if (n) (await n.catch(() => undefined))?.close();
    },
  };
}

async function startSpare(dir: string): Promise<ShimConnection> {
  const path = join(dir, `spare-${randomBytes(6).toString('hex')}.sock`);
  const env = { ...process.env };
  // The agent's preloads and CA bundle only slow the supervisor's start; it needs neither.
  delete env.NODE_OPTIONS;
  delete env.NODE_EXTRA_CA_CERTS;
  const child = spawn(process.execPath, [shimMain, '--socket', path], { detached: true, stdio: 'ignore', env });
  child.unref();
  // Booting a spare must not slow the task being created right now (2 cores): it starts at the lowest
  // priority and takes the normal one back when it is claimed.
  if (child.pid !== undefined) {
    try {
      setPriority(child.pid, 19);
    } catch {
      /* it already exited; the wait below reports that */
    }
  }
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(unavailable(`task supervisor exited with ${code} before it was ready`))),
  );
  exited.catch(() => undefined);
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await Promise.race([connectShim(path), exited]);
    } catch (e) {
      if (e instanceof ServiceError || Date.now() > deadline) {
        child.kill('SIGKILL');
        await rm(path, { force: true });
        throw e instanceof ServiceError ? e : unavailable('task supervisor did not start', e);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}
