/**
 * A private, real containerd (Debian's 1.6) for side-by-side tests and benchmarks: its own root, state, opt dir
 * and sockets in a temp dir, the CRI plugin off. Berth clients must work against it unchanged.
 *
 * Binary: $BERTH_TEST_CONTAINERD, else /usr/bin/containerd. Log: `<dir>/containerd.log`.
 * Shims and FIFOs still use /run/containerd/{s,fifo} (hard-wired in 1.6); pulls and snapshots do not.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { killAtExit } from './cleanup.js';
import { logTail } from './log-tail.js';
import { tempDir } from './tmp.js';

export interface ContainerdProcess {
  /** The gRPC unix socket (pass to `ctr --address`). */
  readonly socket: string;
  readonly root: string;
  readonly logFile: string;
  /** The daemon's process id (its shims are other processes). */
  readonly pid: number | undefined;
  /** Stops containerd (SIGTERM, SIGKILL after 10 s), unmounts what it left under root, deletes the temp dir. */
  stop(): Promise<void>;
}

export interface ContainerdOptions {
  /** How long to wait for the socket to answer. Default 20 000 ms. */
  readonly readyTimeoutMs?: number;
  /**
   * `[debug] level` (containerd's default is `info`). The benchmarks pass `warn`, as the shared harness's
   * `start_containerd` (../shared/bench/lib.sh) does.
   */
  readonly logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

export async function startContainerd(opts: ContainerdOptions = {}): Promise<ContainerdProcess> {
  const dir = tempDir('berth-containerd-');
  const binary = process.env['BERTH_TEST_CONTAINERD'] || '/usr/bin/containerd';
  const root = join(dir.path, 'root');
  const socket = join(dir.path, 'containerd.sock');
  const logFile = join(dir.path, 'containerd.log');
  const configFile = join(dir.path, 'config.toml');
  await writeFile(
    configFile,
    [
      'version = 2',
      `root = "${root}"`,
      `state = "${join(dir.path, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${socket}"`,
      '[ttrpc]',
      `  address = "${socket}.ttrpc"`,
      '[debug]',
      `  address = "${join(dir.path, 'debug.sock')}"`,
      ...(opts.logLevel ? [`  level = "${opts.logLevel}"`] : []),
      '[plugins]',
      '  [plugins."io.containerd.internal.v1.opt"]',
      `    path = "${join(dir.path, 'opt')}"`,
      '',
    ].join('\n'),
  );
  const log = openSync(logFile, 'a');
  const child = spawn(binary, ['--config', configFile], { stdio: ['ignore', log, log] });
  closeSync(log);
  const unregister = child.pid === undefined ? () => undefined : killAtExit(child.pid);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    unregister();
    await dir.remove();
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 20_000);
  for (;;) {
    const state = await Promise.race([spawnError, exited.then(() => new Error('exited')), answers(socket)]);
    if (state === true) break;
    if (state instanceof Error || Date.now() > deadline) {
      const tail = await logTail(logFile);
      await stop();
      throw new Error(
        `containerd (${binary}) did not start: ${state instanceof Error ? state.message : 'socket not answering'}\n${tail}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { socket, root, logFile, pid: child.pid, stop };
}

function answers(socket: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(socket);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
