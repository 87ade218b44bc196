/**
 * The per-task supervisor ("shim"). The agent starts one ahead of need, detached in its own session, and
 * hands it a task with `init`. From then on it owns the task's processes: it runs `runc create` / `runc
 * exec` as its own children and, being the child subreaper, inherits the container processes when runc
 * exits, so it alone collects their exit statuses. It keeps running when the agent stops; a restarted agent
 * reconnects on `<dir>/shim.sock`. Every exit is also written to `<dir>/<process>.exit`, so a status
 * survives even this process.
 *
 * stdio: the client's FIFOs are handed to the container as they are (no copying), opened so that the
 * container never sees a premature EOF or SIGPIPE; our own descriptors are closed when the process exits, so
 * the client reads EOF exactly when the last writer in the container is gone.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants as fsc, openSync } from 'node:fs';
import { appendFile, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { type ConsoleSocket, openConsoleSocket } from './console.js';
import {
  type ErrorBody,
  type Exit,
  type ExitNotice,
  exitFile,
  onLines,
  type ProcessState,
  type ProcessStatus,
  pidFile,
  type Request,
  type Stdio,
  socketName,
} from './protocol.js';
import { becomeSubreaper, resizePty, setBlocking, tryWait } from './sys.js';

interface Proc {
  readonly execId: string;
  readonly io: Stdio;
  readonly processFile?: string;
  pid: number;
  status: ProcessStatus;
  exit?: Exit;
  /** Our copies of the stdio descriptors handed to the process, closed on its exit. */
  fds: number[];
  /** Terminal mode: the pty master and the copies between it and the FIFOs. */
  console?: ConsoleSocket;
  consoleDone?: Promise<void>;
}

class Failure extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const args = process.argv.slice(2);
const spareSocket = args[args.indexOf('--socket') + 1] ?? '';
if (!spareSocket) {
  process.stderr.write('usage: shim --socket <path>\n');
  process.exit(2);
}

let task: { dir: string; id: string; runcRoot: string; runc: string } | undefined;
const procs = new Map<string, Proc>();
const clients = new Set<Socket>();
let taskServer: Server | undefined;

function log(msg: string, fields: Record<string, unknown> = {}): void {
  if (!task) return;
  const line = JSON.stringify({ time: new Date().toISOString(), level: 'info', msg, pid: process.pid, ...fields });
  void appendFile(join(task.dir, 'shim.log'), `${line}\n`).catch(() => undefined);
}

/** Runs runc with the task's root and a JSON log, so a failure reports runc's own last error line. */
async function runc(
  argv: readonly string[],
  stdio: Array<number | 'ignore'> = ['ignore', 'ignore', 'ignore'],
): Promise<void> {
  const t = need();
  const logPath = join(t.dir, 'runc.log');
  await removeFile(logPath);
  const child = spawn(t.runc, ['--root', t.runcRoot, '--log', logPath, '--log-format', 'json', ...argv], {
    stdio: stdio as Array<number | 'ignore'>,
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c, sig) => resolve(c ?? (sig ? 128 : null)));
  });
  if (code === 0) return;
  throw new Failure('unknown', await runcError(logPath, `runc ${argv[0] ?? ''} exited with ${code}`));
}

async function runcError(logPath: string, fallback: string): Promise<string> {
  try {
    const lines = (await readFile(logPath, 'utf8')).trim().split('\n').reverse();
    for (const l of lines) {
      const entry = JSON.parse(l) as { level?: string; msg?: string };
      if (entry.level === 'error' && entry.msg) return entry.msg;
    }
  } catch {
    /* no log: the fallback says what we know */
  }
  return fallback;
}

/**
 * Removes a file that may not exist. Not `rm`: its first use loads Node's rimraf module, ~2 ms on the path
 * of a task's creation, and every use stats before it unlinks.
 */
async function removeFile(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

function need(): { dir: string; id: string; runcRoot: string; runc: string } {
  if (!task) throw new Failure('failed_precondition', 'supervisor has no task yet');
  return task;
}

/**
 * Opens the client's FIFOs for the process. stdin read-only without blocking (the client opens its write end
 * around the same time; a blocking open could hang on a vanished client), then made blocking for the
 * container. stdout/stderr read-write: that never blocks, and the reader we hold keeps the container from
 * SIGPIPE when a detached client goes away, as containerd's shim does.
 */
function openStdio(io: Stdio): { fds: number[]; stdio: Array<number | 'ignore'> } {
  const fds: number[] = [];
  const open = (path: string, flags: number): number | 'ignore' => {
    if (path === '') return 'ignore';
    const fd = openSync(path, flags);
    fds.push(fd);
    return fd;
  };
  try {
    const stdin = open(io.stdin, fsc.O_RDONLY | fsc.O_NONBLOCK);
    if (typeof stdin === 'number') setBlocking(stdin);
    const stdout = open(io.stdout, fsc.O_RDWR);
    const stderr = open(io.stderr, fsc.O_RDWR);
    return { fds, stdio: [stdin, stdout, stderr] };
  } catch (e) {
    closeFds(fds);
    throw new Failure('unknown', `failed to open stdio: ${(e as Error).message}`);
  }
}

function closeFds(fds: number[]): void {
  for (const fd of fds.splice(0)) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
  }
}

async function readPid(execId: string): Promise<number> {
  const t = need();
  const text = await readFile(join(t.dir, pidFile(execId)), 'utf8');
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Failure('unknown', `bad pid file for ${execId || 'init'}: ${text}`);
  return pid;
}

async function create(bundle: string, io: Stdio): Promise<{ pid: number }> {
  const t = need();
  if (procs.has('')) throw new Failure('already_exists', `task ${t.id}: already exists`);
  const proc: Proc = { execId: '', io, pid: 0, status: 'created', fds: [] };
  let stdio: Array<number | 'ignore'>;
  const argv = ['create', '--bundle', bundle, '--pid-file', join(t.dir, pidFile(''))];
  if (io.terminal) {
    proc.console = await openConsoleSocket(join(t.dir, 'console.sock'));
    argv.push('--console-socket', proc.console.path);
    stdio = ['ignore', 'ignore', 'ignore'];
  } else {
    const opened = openStdio(io);
    proc.fds = opened.fds;
    stdio = opened.stdio;
  }
  try {
    await runc([...argv, t.id], stdio);
    proc.pid = await readPid('');
    if (proc.console) proc.consoleDone = proc.console.attach(io);
  } catch (e) {
    closeFds(proc.fds);
    proc.console?.close();
    throw e;
  }
  if (!io.terminal) {
    // stdin is the container's alone now; the write ends stay open until exit (see openStdio).
    const stdinFd = stdio[0];
    if (typeof stdinFd === 'number') {
      closeSync(stdinFd);
      proc.fds = proc.fds.filter((fd) => fd !== stdinFd);
    }
  }
  procs.set('', proc);
  reap();
  return { pid: proc.pid };
}

async function start(execId: string): Promise<{ pid: number }> {
  const t = need();
  const proc = procs.get(execId);
  if (!proc) throw new Failure('not_found', execId === '' ? `task ${t.id} not found` : `process ${execId}: not found`);
  if (proc.status !== 'created') {
    throw new Failure(
      'failed_precondition',
      `cannot start a ${proc.status === 'running' ? 'running' : 'stopped'} process`,
    );
  }
  if (execId === '') {
    await runc(['start', t.id]);
    if (proc.status === 'created') proc.status = 'running';
    return { pid: proc.pid };
  }
  const init = procs.get('');
  if (init?.status !== 'running') throw new Failure('failed_precondition', 'container is not running');
  let stdio: Array<number | 'ignore'> = ['ignore', 'ignore', 'ignore'];
  const argv = ['exec', '--detach', '--pid-file', join(t.dir, pidFile(execId)), '--process', proc.processFile ?? ''];
  if (proc.io.terminal) {
    proc.console = await openConsoleSocket(join(t.dir, `console-${execId}.sock`));
    argv.push('--console-socket', proc.console.path);
  } else {
    const opened = openStdio(proc.io);
    proc.fds = opened.fds;
    stdio = opened.stdio;
  }
  try {
    await runc([...argv, t.id], stdio);
    proc.pid = await readPid(execId);
    if (proc.console) proc.consoleDone = proc.console.attach(proc.io);
  } catch (e) {
    closeFds(proc.fds);
    proc.console?.close();
    throw e;
  }
  const stdinFd = stdio[0];
  if (typeof stdinFd === 'number') {
    closeSync(stdinFd);
    proc.fds = proc.fds.filter((fd) => fd !== stdinFd);
  }
  if (proc.status === 'created') proc.status = 'running';
  reap();
  return { pid: proc.pid };
}

/** Collects every exited process we know the pid of; the rest of the exit handling runs asynchronously. */
function reap(): void {
  for (const proc of procs.values()) {
    if (proc.pid === 0 || proc.exit) continue;
    let code: number | undefined;
    try {
      code = tryWait(proc.pid);
    } catch (e) {
      // ECHILD: not (or no longer) ours to wait for, e.g. after this process was itself restarted.
      log('waitpid failed', { pid: proc.pid, err: (e as Error).message });
      code = 255;
    }
    if (code === undefined) continue;
    const exit: Exit = { pid: proc.pid, exitStatus: code, exitedAt: new Date().toISOString() };
    proc.exit = exit;
    void finishExit(proc, exit);
  }
}

async function finishExit(proc: Proc, exit: Exit): Promise<void> {
  // Output first: the client must have every byte (and EOF) before Wait answers.
  if (proc.consoleDone) await proc.consoleDone.catch(() => undefined);
  proc.console?.close();
  closeFds(proc.fds);
  if (proc.execId === '') {
    // The other processes died with the init process (its pid namespace is gone); release their stdio too.
    for (const p of procs.values()) if (p !== proc && !p.exit) closeFds(p.fds);
  }
  const t = need();
  const file = join(t.dir, exitFile(proc.execId));
  await writeFile(`${file}.tmp`, JSON.stringify(exit));
  await rename(`${file}.tmp`, file);
  proc.status = 'stopped';
  log('process exited', { execId: proc.execId, ...exit });
  const notice: ExitNotice = { event: 'exit', execId: proc.execId, exit };
  for (const c of clients) c.write(`${JSON.stringify(notice)}\n`);
}

function state(): { id: string; processes: ProcessState[] } {
  const t = need();
  return {
    id: t.id,
    processes: [...procs.values()].map((p) => ({
      execId: p.execId,
      pid: p.pid,
      status: p.status,
      io: p.io,
      ...(p.exit && p.status === 'stopped' ? { exit: p.exit } : {}),
    })),
  };
}

async function handle(req: Request): Promise<unknown> {
  switch (req.method) {
    case 'init': {
      if (task) throw new Failure('failed_precondition', 'supervisor already has a task');
      setPriority(0);
      // Only a task's supervisor: the launcher (see spawnSpare) must not inherit orphans it would never reap.
      becomeSubreaper();
      task = { dir: req.dir, id: req.id, runcRoot: req.runcRoot, runc: req.runc };
      const path = join(req.dir, socketName);
      await removeFile(path);
      taskServer = createServer(serve);
      await new Promise<void>((resolve, reject) => {
        taskServer?.once('error', reject);
        taskServer?.listen(path, resolve);
      });
      await writeFile(join(req.dir, 'shim.pid'), String(process.pid));
      // The spare socket is of no use to anyone any more, but its removal need not delay the task.
      spare.close();
      void removeFile(spareSocket).catch(() => undefined);
      log('supervising', { id: req.id });
      return { pid: process.pid };
    }
    case 'create':
      return create(req.bundle, req.io);
    case 'start':
      return start(req.execId);
    case 'exec': {
      if (procs.has(req.execId)) throw new Failure('already_exists', `id ${req.execId}: already exists`);
      procs.set(req.execId, {
        execId: req.execId,
        io: req.io,
        processFile: req.processFile,
        pid: 0,
        status: 'created',
        fds: [],
      });
      return {};
    }
    case 'state':
      return state();
    case 'resize': {
      const proc = procs.get(req.execId);
      if (!proc) throw new Failure('not_found', `process ${req.execId}: not found`);
      // After the exit the terminal is gone; a late resize (ctr sends one as it starts) is moot, as in containerd.
      if (proc.exit) return {};
      if (!proc.io.terminal) throw new Failure('failed_precondition', 'process has no terminal');
      if (proc.console?.master === undefined) return {};
      resizePty(proc.console.master, req.width, req.height);
      return {};
    }
    case 'closeIO': {
      const proc = procs.get(req.execId);
      if (!proc) throw new Failure('not_found', `process ${req.execId}: not found`);
      proc.console?.closeStdin();
      return {};
    }
    case 'deleteExec': {
      const proc = procs.get(req.execId);
      if (!proc) throw new Failure('not_found', `process ${req.execId}: not found`);
      if (proc.status === 'running') throw new Failure('failed_precondition', 'cannot delete a running process');
      closeFds(proc.fds);
      proc.console?.close();
      procs.delete(req.execId);
      const t = need();
      await Promise.all(
        [exitFile(req.execId), pidFile(req.execId), `exec-${req.execId}.json`].map((f) =>
          rm(join(t.dir, f), { force: true }),
        ),
      );
      return {};
    }
    case 'delete':
      await runc(['delete', '--force', need().id]);
      return {};
    case 'spawnSpare':
      return { pid: spawnSpare(req.socket) };
    case 'shutdown':
      setImmediate(() => {
        for (const p of procs.values()) {
          closeFds(p.fds);
          p.console?.close();
        }
        process.exit(0);
      });
      return {};
  }
}

/**
 * A new spare supervisor, detached and at the lowest priority until claimed (as the agent starts them).
 * Asked of the agent's launcher, a spare that is never handed a task.
 */
function spawnSpare(socket: string): number {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1] ?? '', '--socket', socket], {
    detached: true,
    stdio: 'ignore',
  });
  child.on('error', () => undefined);
  child.unref();
  if (child.pid === undefined) throw new Failure('unavailable', 'cannot start a task supervisor');
  try {
    setPriority(child.pid, 19);
  } catch {
    /* it already exited: the agent's connection attempts report that */
  }
  return child.pid;
}

function serve(socket: Socket): void {
  clients.add(socket);
  onLines(socket, (line) => {
    let msg: Request & { seq: number };
    try {
      msg = JSON.parse(line) as Request & { seq: number };
    } catch {
      return;
    }
    handle(msg).then(
      (result) => socket.write(`${JSON.stringify({ seq: msg.seq, ok: true, result })}\n`),
      (e: unknown) => {
        const error: ErrorBody =
          e instanceof Failure
            ? { code: e.code, message: e.message }
            : { code: 'unknown', message: (e as Error).message };
        socket.write(`${JSON.stringify({ seq: msg.seq, ok: false, error })}\n`);
      },
    );
  });
  const gone = (): void => {
    clients.delete(socket);
    // A spare whose agent went away will never be claimed.
    if (!task && socket === spareClient) process.exit(0);
  };
  socket.on('close', gone);
  socket.on('error', () => undefined);
}

let spareClient: Socket | undefined;
// An agent that died between starting us and connecting will never claim us.
const unclaimedTimer = setTimeout(() => {
  if (!spareClient) process.exit(0);
}, 30_000);
const spare = createServer((s) => {
  clearTimeout(unclaimedTimer);
  spareClient ??= s;
  serve(s);
});
spare.listen(spareSocket);
process.on('SIGCHLD', reap);
// SIGCHLD can coalesce or arrive before a pid is known; a slow poll is the safety net.
setInterval(reap, 1_000);
process.on('SIGTERM', () => undefined);
process.on('SIGINT', () => undefined);
process.on('SIGHUP', () => undefined);
