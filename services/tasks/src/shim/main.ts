/**
 * The node's task supervisor ("shim"): one process holds every task of the node. The agent starts it once
 * (detached, in its own session) and hands it each new task with `init` on a fresh connection to its
 * socket. For each task it runs `runc create` / `runc exec` as its own children and, being the child
 * subreaper, inherits the container processes when runc exits, so it alone collects their exit statuses.
 * It keeps running when the agent stops; a restarted agent reconnects on each task's `<dir>/shim.sock`.
 * Every exit is also written to `<dir>/<process>.exit`, so a status survives even this process. It exits
 * once it holds no task and no agent is connected.
 *
 * stdio: the client's FIFOs are handed to the container as they are (no copying), opened so that the
 * container never sees a premature EOF or SIGPIPE; our own descriptors are closed when the process exits, so
 * the client reads EOF exactly when the last writer in the container is gone.
 */
import { spawn } from 'node:child_process';
import { closeSync, constants as fsc, openSync } from 'node:fs';
import { appendFile, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
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
import { becomeSubreaper, peekExitedChild, resizePty, setBlocking, tryWait } from './sys.js';

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
const mainSocket = args[args.indexOf('--socket') + 1] ?? '';
if (!mainSocket) {
  process.stderr.write('usage: shim --socket <path>\n');
  process.exit(2);
}

/** Runs runc with the task's root and a JSON log, so a failure reports runc's own last error line. */
async function runc(
  t: { dir: string; runcRoot: string; runc: string },
  argv: readonly string[],
  stdio: Array<number | 'ignore'> = ['ignore', 'ignore', 'ignore'],
): Promise<void> {
  const logPath = join(t.dir, 'runc.log');
  await removeFile(logPath);
  const child = spawn(t.runc, ['--root', t.runcRoot, '--log', logPath, '--log-format', 'json', ...argv], {
    stdio: stdio as Array<number | 'ignore'>,
  });
  if (child.pid !== undefined) ourChildren.add(child.pid);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (c, sig) => resolve(c ?? (sig ? 128 : null)));
  }).finally(() => child.pid !== undefined && ourChildren.delete(child.pid));
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

/** The tasks this process supervises, by bundle directory. */
const tasks = new Map<string, SupervisedTask>();
/** Every open connection: while one is open (or a task is held) the process stays. */
const connections = new Set<Socket>();

/** One task: its processes, its socket `<dir>/shim.sock`, and the agents connected to it. */
class SupervisedTask {
  readonly procs = new Map<string, Proc>();
  /** Connections bound to this task: `init`'s own and those accepted on its socket. Exits are pushed to them. */
  readonly clients = new Set<Socket>();
  private server: Server | undefined;

  constructor(
    readonly dir: string,
    readonly id: string,
    readonly runcRoot: string,
    readonly runc: string,
  ) {}

  async listen(): Promise<void> {
    const path = join(this.dir, socketName);
    await removeFile(path);
    const server = createServer((s) => serve(s, this));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, resolve);
    });
  }

  log(msg: string, fields: Record<string, unknown> = {}): void {
    const line = JSON.stringify({ time: new Date().toISOString(), level: 'info', msg, pid: process.pid, ...fields });
    void appendFile(join(this.dir, 'shim.log'), `${line}\n`).catch(() => undefined);
  }

  private async readPid(execId: string): Promise<number> {
    const text = await readFile(join(this.dir, pidFile(execId)), 'utf8');
    const pid = Number(text.trim());
    if (!Number.isInteger(pid) || pid <= 0) {
      throw new Failure('unknown', `bad pid file for ${execId || 'init'}: ${text}`);
    }
    return pid;
  }

  async create(bundle: string, io: Stdio): Promise<{ pid: number }> {
    if (this.procs.has('')) throw new Failure('already_exists', `task ${this.id}: already exists`);
    const proc: Proc = { execId: '', io, pid: 0, status: 'created', fds: [] };
    let stdio: Array<number | 'ignore'>;
    const argv = ['create', '--bundle', bundle, '--pid-file', join(this.dir, pidFile(''))];
    if (io.terminal) {
      proc.console = await openConsoleSocket(join(this.dir, 'console.sock'));
      argv.push('--console-socket', proc.console.path);
      stdio = ['ignore', 'ignore', 'ignore'];
    } else {
      const opened = openStdio(io);
      proc.fds = opened.fds;
      stdio = opened.stdio;
    }
    try {
      const since = Date.now();
      await runc(this, [...argv, this.id], stdio);
      proc.pid = await this.readPid('');
      forgetOrphanBefore(proc.pid, since);
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
    this.procs.set('', proc);
    this.reap();
    return { pid: proc.pid };
  }

  async start(execId: string): Promise<{ pid: number }> {
    const proc = this.procs.get(execId);
    if (!proc) {
      throw new Failure('not_found', execId === '' ? `task ${this.id} not found` : `process ${execId}: not found`);
    }
    if (proc.status !== 'created') {
      throw new Failure(
        'failed_precondition',
        `cannot start a ${proc.status === 'running' ? 'running' : 'stopped'} process`,
      );
    }
    if (execId === '') {
      await runc(this, ['start', this.id]);
      if (proc.status === 'created') proc.status = 'running';
      return { pid: proc.pid };
    }
    const init = this.procs.get('');
    if (init?.status !== 'running') throw new Failure('failed_precondition', 'container is not running');
    let stdio: Array<number | 'ignore'> = ['ignore', 'ignore', 'ignore'];
    const argv = [
      'exec',
      '--detach',
      '--pid-file',
      join(this.dir, pidFile(execId)),
      '--process',
      proc.processFile ?? '',
    ];
    if (proc.io.terminal) {
      proc.console = await openConsoleSocket(join(this.dir, `console-${execId}.sock`));
      argv.push('--console-socket', proc.console.path);
    } else {
      const opened = openStdio(proc.io);
      proc.fds = opened.fds;
      stdio = opened.stdio;
    }
    try {
      const since = Date.now();
      await runc(this, [...argv, this.id], stdio);
      proc.pid = await this.readPid(execId);
      forgetOrphanBefore(proc.pid, since);
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
    this.reap();
    return { pid: proc.pid };
  }

  /** Collects every exited process of the task we know the pid of; the rest of the exit handling runs asynchronously. */
  reap(): void {
    for (const proc of this.procs.values()) {
      if (proc.pid === 0 || proc.exit) continue;
      let code = orphanExits.get(proc.pid)?.code;
      orphanExits.delete(proc.pid);
      try {
        code ??= tryWait(proc.pid);
      } catch (e) {
        // ECHILD: not (or no longer) ours to wait for, e.g. after this process was itself restarted.
        this.log('waitpid failed', { pid: proc.pid, err: (e as Error).message });
        code = 255;
      }
      if (code === undefined) continue;
      const exit: Exit = { pid: proc.pid, exitStatus: code, exitedAt: new Date().toISOString() };
      proc.exit = exit;
      void this.finishExit(proc, exit);
    }
  }

  private async finishExit(proc: Proc, exit: Exit): Promise<void> {
    // Output first: the client must have every byte (and EOF) before Wait answers.
    if (proc.consoleDone) await proc.consoleDone.catch(() => undefined);
    proc.console?.close();
    closeFds(proc.fds);
    if (proc.execId === '') {
      // The other processes died with the init process (its pid namespace is gone); release their stdio too.
      for (const p of this.procs.values()) if (p !== proc && !p.exit) closeFds(p.fds);
    }
    const file = join(this.dir, exitFile(proc.execId));
    await writeFile(`${file}.tmp`, JSON.stringify(exit));
    await rename(`${file}.tmp`, file);
    proc.status = 'stopped';
    this.log('process exited', { execId: proc.execId, ...exit });
    const notice: ExitNotice = { event: 'exit', execId: proc.execId, exit };
    for (const c of this.clients) c.write(`${JSON.stringify(notice)}\n`);
  }

  state(): { id: string; processes: ProcessState[] } {
    return {
      id: this.id,
      processes: [...this.procs.values()].map((p) => ({
        execId: p.execId,
        pid: p.pid,
        status: p.status,
        io: p.io,
        ...(p.exit && p.status === 'stopped' ? { exit: p.exit } : {}),
      })),
    };
  }

  async handle(req: Request): Promise<unknown> {
    switch (req.method) {
      case 'init':
        throw new Failure('failed_precondition', 'supervisor already has a task');
      case 'create':
        return this.create(req.bundle, req.io);
      case 'start':
        return this.start(req.execId);
      case 'exec': {
        if (this.procs.has(req.execId)) throw new Failure('already_exists', `id ${req.execId}: already exists`);
        this.procs.set(req.execId, {
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
        return this.state();
      case 'resize': {
        const proc = this.procs.get(req.execId);
        if (!proc) throw new Failure('not_found', `process ${req.execId}: not found`);
        // After the exit the terminal is gone; a late resize (ctr sends one as it starts) is moot, as in containerd.
        if (proc.exit) return {};
        if (!proc.io.terminal) throw new Failure('failed_precondition', 'process has no terminal');
        if (proc.console?.master === undefined) return {};
        resizePty(proc.console.master, req.width, req.height);
        return {};
      }
      case 'closeIO': {
        const proc = this.procs.get(req.execId);
        if (!proc) throw new Failure('not_found', `process ${req.execId}: not found`);
        proc.console?.closeStdin();
        return {};
      }
      case 'deleteExec': {
        const proc = this.procs.get(req.execId);
        if (!proc) throw new Failure('not_found', `process ${req.execId}: not found`);
        if (proc.status === 'running') throw new Failure('failed_precondition', 'cannot delete a running process');
        closeFds(proc.fds);
        proc.console?.close();
        this.procs.delete(req.execId);
        await Promise.all(
          [exitFile(req.execId), pidFile(req.execId), `exec-${req.execId}.json`].map((f) =>
            rm(join(this.dir, f), { force: true }),
          ),
        );
        return {};
      }
      case 'kill': {
        const init = this.procs.get('');
        if (!req.all && init && init.pid !== 0 && !init.exit) {
          // What `runc kill` without --all does, without starting runc (~5 ms of a Kill): the init process is our
          // child (we are its subreaper) until `reap` collects it and records its exit, so its pid cannot name
          // another process, and a zombie takes the signal as a no-op. A stopped task still goes to runc, which
          // refuses it as before.
          process.kill(init.pid, req.signal);
          return {};
        }
        await runc(this, ['kill', ...(req.all ? ['--all'] : []), this.id, String(req.signal)]);
        return {};
      }
      case 'delete':
        await runc(this, ['delete', '--force', this.id]);
        return {};
      case 'shutdown':
        // As a supervisor of its own used to exit here: the task's connections close once this reply is out.
        setImmediate(() => this.close());
        return {};
    }
  }

  /** Lets go of the task: its descriptors, its socket, its connections. */
  close(): void {
    if (tasks.get(this.dir) === this) tasks.delete(this.dir);
    for (const p of this.procs.values()) {
      closeFds(p.fds);
      p.console?.close();
    }
    this.server?.close();
    void removeFile(join(this.dir, socketName)).catch(() => undefined);
    for (const c of this.clients) c.destroy();
    this.clients.clear();
    exitIfIdle();
  }
}

/** A connection not bound to a task yet takes one with `init`. */
async function handleUnbound(req: Request, socket: Socket): Promise<{ task?: SupervisedTask; result: unknown }> {
  if (req.method !== 'init') throw new Failure('failed_precondition', 'supervisor has no task yet');
  if (tasks.has(req.dir)) throw new Failure('already_exists', `task ${req.id}: already exists`);
  const task = new SupervisedTask(req.dir, req.id, req.runcRoot, req.runc);
  tasks.set(req.dir, task);
  try {
    await task.listen();
    await writeFile(join(req.dir, 'shim.pid'), String(process.pid));
  } catch (e) {
    tasks.delete(req.dir);
    throw e;
  }
  task.clients.add(socket);
  task.log('supervising', { id: req.id });
  return { task, result: { pid: process.pid } };
}

function serve(socket: Socket, bound?: SupervisedTask): void {
  let task = bound;
  connections.add(socket);
  task?.clients.add(socket);
  // Requests of one connection are answered in order of arrival, as each used to be by a supervisor of its own.
  onLines(socket, (line) => {
    let msg: Request & { seq: number };
    try {
      msg = JSON.parse(line) as Request & { seq: number };
    } catch {
      return;
    }
    const handled = task
      ? task.handle(msg)
      : handleUnbound(msg, socket).then((r) => {
          task = r.task;
          return r.result;
        });
    handled.then(
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
  socket.on('close', () => {
    connections.delete(socket);
    task?.clients.delete(socket);
    exitIfIdle();
  });
  socket.on('error', () => undefined);
}

/** No task to supervise and no agent connected: nobody needs this process any more. */
function exitIfIdle(): void {
  if (tasks.size > 0 || connections.size > 0) return;
  main.close();
  process.exit(0);
}

/** runc processes Node spawned and waits for itself (libuv collects them: not ours to take). */
const ourChildren = new Set<number>();
/**
 * Exits of processes re-parented to us that no task knew when they were collected: the orphans a
 * container without its own pid namespace leaves, or an exec process that exited before its pid file was
 * read (kept a minute for that case).
 */
const orphanExits = new Map<number, { code: number; at: number }>();

/** An orphan's exit collected before `since` was another process's that had the same pid. */
function forgetOrphanBefore(pid: number, since: number): void {
  const e = orphanExits.get(pid);
  if (e && e.at < since) orphanExits.delete(pid);
}

/**
 * Collects the tasks' processes, then every other exited child but runc (left to libuv), so that in a
 * process that outlives many tasks no zombie accumulates. waitid(WNOWAIT) shows the next exited child
 * without collecting it, so a task's process is still collected by its task, with its status.
 */
function reapAll(): void {
  for (const t of tasks.values()) t.reap();
  for (let i = 0; i < 1000; i++) {
    const pid = peekExitedChild();
    if (pid === undefined || ourChildren.has(pid)) break;
    const owner = [...tasks.values()].find((t) => [...t.procs.values()].some((p) => p.pid === pid && !p.exit));
    if (owner) {
      owner.reap();
      continue;
    }
    try {
      const code = tryWait(pid);
      if (code !== undefined) orphanExits.set(pid, { code, at: Date.now() });
    } catch {
      break;
    }
  }
  const old = Date.now() - 60_000;
  for (const [pid, e] of orphanExits) if (e.at < old) orphanExits.delete(pid);
}

// The container processes are re-parented here when runc exits: ours to reap.
becomeSubreaper();
// An agent that died between starting us and connecting will never come.
const unclaimedTimer = setTimeout(exitIfIdle, 30_000);
const main = createServer((s) => {
  clearTimeout(unclaimedTimer);
  serve(s);
});
await removeFile(mainSocket);
main.listen(mainSocket);
process.on('SIGCHLD', reapAll);
// SIGCHLD can coalesce or arrive before a pid is known; a slow poll is the safety net.
setInterval(reapAll, 1_000);
process.on('SIGTERM', () => undefined);
process.on('SIGINT', () => undefined);
process.on('SIGHUP', () => undefined);
