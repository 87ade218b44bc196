import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { berthdNodeFlags } from '@berth/berthd/node-flags';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../../..');
const berthdMain = join(repoRoot, 'apps/berthd/dist/main.js');
const berthdInstrument = join(repoRoot, 'apps/berthd/dist/instrument.js');

export interface BerthdProcess {
  /** The socket path the process listens on. */
  readonly socket: string;
  readonly dir: string;
  readonly child: ChildProcess;
  /** Everything the process wrote to stderr so far (JSON log lines). */
  logs(): string;
  /** SIGTERM, then waits for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL (a crash: nothing cleaned up), then waits for exit; keeps the directory. */
  kill(): Promise<void>;
}

export interface StartOptions {
  /** e.g. ['serve', 'metadata']; default all-in-one. */
  readonly role?: readonly string[];
  /** Extra flags, e.g. ['--postgres', url, '--nats', url]. */
  readonly args?: readonly string[];
  /** A JSON config file written for the process. */
  readonly config?: unknown;
  /** Directory for root/state/socket; a fresh temp dir by default (removed by `stop`). */
  readonly dir?: string;
  /** Socket path (or `host:port`); default <dir>/berth.sock. For `serve <service>`, also its listen address. */
  readonly socket?: string;
  readonly env?: Readonly<Record<string, string>>;
  /** Node's own options, before berthd's (e.g. another `--import`). */
  readonly nodeArgs?: readonly string[];
}

/** Starts `berthd` as a child process and waits until its socket accepts connections. */
export async function startBerthd(opts: StartOptions = {}): Promise<BerthdProcess> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'berth-e2e-')));
  const socket = opts.socket ?? join(dir, 'berth.sock');
  const args = [
    ...berthdNodeFlags,
    ...(opts.nodeArgs ?? []),
    '--import',
    berthdInstrument,
    berthdMain,
    ...(opts.role ?? []),
    '--root',
    join(dir, 'root'),
    '--state',
    join(dir, 'state'),
  ];
  // A service served alone listens on its configured `<service>.address` if the config names one.
  if (opts.role?.[0] !== 'serve' || opts.role[1] === 'gateway' || opts.socket) args.push('--address', socket);
  if (opts.config !== undefined) {
    const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
    await writeFile(file, JSON.stringify(opts.config));
    args.push('--config', file);
  }
  args.push(...(opts.args ?? []));
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));

  const deadline = Date.now() + 60_000;
  // A berthd that did not start (some tests expect that) leaves no directory of ours behind.
  const failed = async (message: string): Promise<never> => {
    if (ownDir) await rm(dir, { recursive: true, force: true });
    throw new Error(message);
  };
  while (!(await answers(socket))) {
    if (child.exitCode !== null) return failed(`berthd exited with ${child.exitCode}:\n${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      return failed(`berthd did not listen on ${socket} within 60 s:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    socket,
    dir,
    child,
    logs: () => stderr,
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const code = await exited;
      if (ownDir) await rm(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** Whether `socket` (a unix socket path, or `host:port` for a service listening on TCP) accepts connections. */
function answers(socket: string): Promise<boolean> {
  const tcp = /^([\d.]+):(\d+)$/.exec(socket);
  return new Promise((r) => {
    const s = tcp ? connect({ host: tcp[1], port: Number(tcp[2]) }) : connect(socket);
    s.once('connect', () => {
      s.destroy();
      r(true);
    });
    s.once('error', () => r(false));
  });
}
