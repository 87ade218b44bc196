import koffi from 'koffi';

/**
 * The few Linux calls a supervisor needs that Node does not offer: becoming the child subreaper (so the
 * container's init, orphaned when `runc create` exits, is re-parented to us and its exit status is ours to
 * collect), waiting for one specific pid, clearing O_NONBLOCK on a FIFO handed to the container, and
 * sizing a pseudo-terminal. Bound through koffi (prebuilt FFI), loaded only by the supervisor process.
 */

const libc = koffi.load('libc.so.6');
const PR_SET_CHILD_SUBREAPER = 36;
const WNOHANG = 1;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const TIOCSWINSZ = 0x5414;

const prctl: (option: number, a2: number, a3: number, a4: number, a5: number) => number = libc.func(
  'int prctl(int, unsigned long, unsigned long, unsigned long, unsigned long)',
);
const waitpidFn: (pid: number, status: number[], options: number) => number = libc.func(
  'int waitpid(int, _Out_ int *, int)',
);
const waitidFn: (idtype: number, id: number, info: Buffer, options: number) => number = libc.func(
  'int waitid(int, uint32_t, void *, int)',
);
const fcntlFn: (fd: number, cmd: number, arg: number) => number = libc.func('int fcntl(int, int, int)');
const Winsize = koffi.struct('berth_winsize', { row: 'uint16', col: 'uint16', xpixel: 'uint16', ypixel: 'uint16' });
const ioctlWinsize: (
  fd: number,
  req: number,
  ws: { row: number; col: number; xpixel: number; ypixel: number },
) => number = libc.func('int ioctl(int, unsigned long, const berth_winsize *)');
void Winsize;

function check(ret: number, what: string): number {
  if (ret < 0) {
    const errno = koffi.errno();
    throw Object.assign(new Error(`${what}: errno ${errno}`), { errno });
  }
  return ret;
}

export function becomeSubreaper(): void {
  check(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 'prctl(PR_SET_CHILD_SUBREAPER)');
}

/**
 * Collects `pid` if it has exited: its exit code (128 + signal when killed by a signal, as a shell reports
 * it and containerd's shim does), or undefined while it runs. ECHILD (not our child, or already reaped)
 * throws.
 */
export function tryWait(pid: number): number | undefined {
  const status = [0];
  const r = check(waitpidFn(pid, status, WNOHANG), `waitpid(${pid})`);
  if (r === 0) return undefined;
  const st = status[0] ?? 0;
  const sig = st & 0x7f;
  return sig === 0 ? (st >> 8) & 0xff : 128 + sig;
}

const P_ALL = 0;
const WEXITED = 4;
const WNOWAIT = 0x01000000;
/** siginfo_t is 128 bytes; si_pid sits after si_signo, si_errno, si_code and padding (x86_64 and arm64). */
const SIGINFO_SIZE = 128;
const SI_PID_OFFSET = 16;

/**
 * The pid of a child that has exited and is not collected yet, without collecting it (waitid with WNOWAIT),
 * or undefined if there is none.
 */
export function peekExitedChild(): number | undefined {
  const info = Buffer.alloc(SIGINFO_SIZE);
  if (waitidFn(P_ALL, 0, info, WEXITED | WNOHANG | WNOWAIT) < 0) return undefined; // ECHILD: no children
  const pid = info.readInt32LE(SI_PID_OFFSET);
  return pid > 0 ? pid : undefined;
}

/** Makes `fd` blocking again: a FIFO opened without blocking must not surprise the container's reads. */
export function setBlocking(fd: number): void {
  const flags = check(fcntlFn(fd, F_GETFL, 0), 'fcntl(F_GETFL)');
  check(fcntlFn(fd, F_SETFL, flags & ~O_NONBLOCK), 'fcntl(F_SETFL)');
}

export function resizePty(fd: number, width: number, height: number): void {
  check(ioctlWinsize(fd, TIOCSWINSZ, { row: height, col: width, xpixel: 0, ypixel: 0 }), 'ioctl(TIOCSWINSZ)');
}
