import { type ChildProcessByStdio, spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';

export type TarChild = ChildProcessByStdio<Writable, null, Readable>;

/** A running tar (or the shell that becomes one), with its end and its stderr recorded from its start. */
export interface TarProcess {
  readonly child: TarChild;
  /** Settles when the process has exited and its pipes closed; rejects when it could not be started. */
  readonly closed: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>;
  /** The first 8 kB of its stderr. */
  stderr(): string;
}

export const defaultXattrArgs: readonly string[] = ['--xattrs-include=*', '--xattrs-exclude=trusted.*'];

/** GNU tar's arguments after `--directory`: extract stdin with owners, modes, xattrs and links as given. */
function extractArgs(xattrArgs: readonly string[]): string[] {
  return [
    '--extract',
    '--file=-',
    // Every member was checked and re-encoded with its resolved path by the caller; with this, tar
    // creates symlinks at once instead of deferring them, so the tree matches the caller's model.
    '--absolute-names',
    '--numeric-owner',
    '--same-owner',
    '--same-permissions',
    '--xattrs',
    ...xattrArgs,
    '--warning=no-timestamp',
    '--warning=no-unknown-keyword',
  ];
}

function launch(file: string, args: readonly string[]): TarProcess {
  const child = spawn(file, args, { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 8192) stderr += d.toString();
  });
  // EPIPE when tar dies early is reported through its exit status and stderr instead.
  child.stdin.on('error', () => undefined);
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
  closed.catch(() => undefined);
  return { child, closed, stderr: () => stderr };
}

/**
 * A tar started ahead of its layer, while the thread had nothing to do. Forking tar from a process of
 * berthd's size blocks the forking thread for 6-13 ms and, holding the process's memory map, stalls the
 * main thread's gRPC answers for 3-7 ms (bench/README.md, session 14); a layer that arrives during a pull's
 * downloads (unpack-ahead) then pays neither. The spare is a shell that reads the target directory from its
 * stdin, one byte at a time up to the newline (`read` never reads ahead on a pipe), then becomes tar with the
 * rest of stdin.
 */
let spare: TarProcess | undefined;

/** Not exited nor killed: still reading its directory. */
const waiting = (s: TarProcess | undefined): s is TarProcess =>
  s !== undefined && s.child.exitCode === null && s.child.signalCode === null;

const spareScript = 'IFS= read -r dir || exit 97; exec tar "--directory=$dir" "$@"';

/** Starts a spare tar for the default arguments, unless one waits already. */
export function prepareSpareTar(): void {
  if (waiting(spare)) return;
  spare = launch('sh', ['-c', spareScript, 'sh', ...extractArgs(defaultXattrArgs)]);
}

/** The pid of the spare waiting for a layer, if one waits. */
export function spareTarPid(): number | undefined {
  return waiting(spare) ? spare.child.pid : undefined;
}

/** Kills the waiting spare, if any, and waits for its end (so that it is reaped by this thread). */
export async function discardSpareTar(): Promise<void> {
  const s = spare;
  spare = undefined;
  if (!s) return;
  s.child.kill('SIGKILL');
  await s.closed.catch(() => undefined);
}

/** A tar extracting stdin into `dir`: the spare when it waits and fits, otherwise a new one. */
export function startTar(dir: string, xattrArgs: readonly string[]): TarProcess {
  const s = spare;
  if (s && xattrArgs === defaultXattrArgs && !dir.includes('\n')) {
    spare = undefined;
    if (waiting(s)) {
      s.child.stdin.write(`${dir}\n`);
      return s;
    }
  }
  return launch('tar', [`--directory=${dir}`, ...extractArgs(xattrArgs)]);
}
