import { closeSync, createReadStream, createWriteStream, constants as fsc, openSync, type ReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import koffi from 'koffi';
import type { Stdio } from './protocol.js';

/**
 * runc's `--console-socket`: runc connects to a unix socket of ours and sends the pty master as an
 * SCM_RIGHTS message. Node cannot receive descriptors, so the socket is made and read through libc; the
 * blocking accept and recvmsg run on koffi's worker threads.
 */

const libc = koffi.load('libc.so.6');
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const SHUT_RDWR = 2;
const MSG_CMSG_CLOEXEC = 0x40000000;

type AsyncFn<A extends unknown[]> = { async: (...args: [...A, (err: unknown, res: number) => void]) => void };

const socketFn: (domain: number, type: number, proto: number) => number = libc.func('int socket(int, int, int)');
const bindFn: (fd: number, addr: Buffer, len: number) => number = libc.func('int bind(int, const void *, uint32_t)');
const listenFn: (fd: number, backlog: number) => number = libc.func('int listen(int, int)');
const accept4Fn: AsyncFn<[number, null, null, number]> = libc.func('int accept4(int, void *, void *, int)');
const recvmsgFn: AsyncFn<[number, unknown, number]> = libc.func('long recvmsg(int, void *, int)');
const shutdownFn: (fd: number, how: number) => number = libc.func('int shutdown(int, int)');
const closeFn: (fd: number) => number = libc.func('int close(int)');

const call = <A extends unknown[]>(fn: AsyncFn<A>, ...args: A): Promise<number> =>
  new Promise((resolve, reject) => fn.async(...args, (err, res) => (err ? reject(err) : resolve(res))));

export interface ConsoleSocket {
  readonly path: string;
  /** The pty master once received (after runc create/exec succeeded). */
  readonly master: number | undefined;
  /**
   * Waits for the master, then copies stdin FIFO → master and master → stdout FIFO. Resolves once the
   * terminal's output is drained (every process holding the slave has exited).
   */
  attach(io: Stdio): Promise<void>;
  closeStdin(): void;
  close(): void;
}

export async function openConsoleSocket(path: string): Promise<ConsoleSocket> {
  await rm(path, { force: true });
  const fd = socketFn(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`console socket: errno ${koffi.errno()}`);
  const addr = Buffer.alloc(110);
  addr.writeUInt16LE(AF_UNIX, 0);
  addr.write(path, 2, 'utf8');
  if (bindFn(fd, addr, 2 + Buffer.byteLength(path) + 1) < 0 || listenFn(fd, 1) < 0) {
    const errno = koffi.errno();
    closeFn(fd);
    throw new Error(`console socket ${path}: errno ${errno}`);
  }
  let listening = true;
  const stopListening = (): void => {
    if (!listening) return;
    listening = false;
    // shutdown wakes an accept blocked in the worker thread; close alone would not.
    shutdownFn(fd, SHUT_RDWR);
    closeFn(fd);
    void rm(path, { force: true });
  };
  const received = (async (): Promise<number> => {
    const conn = await call(accept4Fn, fd, null, null, SOCK_CLOEXEC);
    stopListening();
    if (conn < 0) throw new Error('console socket: accept failed');
    try {
      return await receiveFd(conn);
    } finally {
      closeFn(conn);
    }
  })();
  received.catch(() => undefined);

  let master: number | undefined;
  let stdin: ReadStream | undefined;
  let closed = false;
  return {
    path,
    get master() {
      return master;
    },
    async attach(io) {
      master = await received;
      const m = master;
      const out = io.stdout === '' ? undefined : openSync(io.stdout, fsc.O_RDWR);
      if (io.stdin !== '') {
        stdin = createReadStream(io.stdin);
        const toMaster = createWriteStream('', { fd: m, autoClose: false });
        stdin.on('error', () => undefined);
        toMaster.on('error', () => undefined);
        stdin.pipe(toMaster);
      }
      await new Promise<void>((resolve) => {
        const fromMaster = createReadStream('', { fd: m, autoClose: false, highWaterMark: 32 * 1024 });
        const sink = out === undefined ? undefined : createWriteStream('', { fd: out, autoClose: false });
        const done = (): void => {
          if (sink) sink.end(() => resolve());
          else resolve();
        };
        // EIO once the last slave holder is gone: that is the terminal's end of output.
        fromMaster.on('error', done);
        fromMaster.on('end', done);
        if (sink) fromMaster.pipe(sink, { end: false });
        else fromMaster.resume();
      });
      if (out !== undefined) closeSync(out);
    },
    closeStdin() {
      stdin?.destroy();
    },
    close() {
      if (closed) return;
      closed = true;
      stopListening();
      stdin?.destroy();
      if (master !== undefined) {
        try {
          closeSync(master);
        } catch {
          /* already closed */
        }
        master = undefined;
      }
    },
  };
}

/** Reads one message carrying one descriptor (runc sends the console name as data, the master as SCM_RIGHTS). */
async function receiveFd(conn: number): Promise<number> {
  const size = 256;
  const mem: unknown = koffi.alloc('uint8', size);
  try {
    const base = koffi.address(mem);
    const view = new DataView(koffi.view(mem, size));
    // struct msghdr at 0, struct iovec at 64, data at 96 (64 bytes), control at 160 (64 bytes).
    view.setBigUint64(0, 0n, true);
    view.setUint32(8, 0, true);
    view.setBigUint64(16, base + 64n, true);
    view.setBigUint64(24, 1n, true);
    view.setBigUint64(32, base + 160n, true);
    view.setBigUint64(40, 64n, true);
    view.setInt32(48, 0, true);
    view.setBigUint64(64, base + 96n, true);
    view.setBigUint64(72, 64n, true);
    const n = await call(recvmsgFn, conn, mem, MSG_CMSG_CLOEXEC);
    if (n < 0) throw new Error(`console socket: recvmsg failed`);
    const level = view.getInt32(168, true);
    const type = view.getInt32(172, true);
    if (view.getBigUint64(40, true) < 20n || level !== SOL_SOCKET || type !== SCM_RIGHTS) {
      throw new Error('console socket: no descriptor received');
    }
    return view.getInt32(176, true);
  } finally {
    koffi.free(mem);
  }
}
