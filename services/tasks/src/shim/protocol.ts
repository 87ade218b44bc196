import type { Socket } from 'node:net';

/**
 * The agent ↔ supervisor protocol: one JSON object per line over the supervisor's unix socket. Requests
 * carry a `seq` echoed by their reply; exit notices are pushed to every connected agent unasked.
 */

/** The protocol's framing, for both ends: calls `onLine` with each non-blank line `socket` receives. */
export function onLines(socket: Socket, onLine: (line: string) => void): void {
  let buf = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.trim() !== '') onLine(line);
    }
  });
}

/** The FIFO paths (or files) a process's stdio goes to, as the client gave them; '' means none. */
export interface Stdio {
  readonly stdin: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly terminal: boolean;
}

export type ProcessStatus = 'created' | 'running' | 'stopped';

export interface Exit {
  readonly pid: number;
  readonly exitStatus: number;
  /** ISO 8601. */
  readonly exitedAt: string;
}

/** One process of the task: the init process has execId ''. */
export interface ProcessState {
  readonly execId: string;
  readonly pid: number;
  readonly status: ProcessStatus;
  readonly io: Stdio;
  readonly exit?: Exit;
}

export type Request =
  /**
   * Binds a new connection to the supervisor's socket to a new task: the supervisor then also listens on
   * `<dir>/shim.sock` for it and logs to the dir. A connection serves one task.
   */
  | {
      readonly method: 'init';
      readonly dir: string;
      readonly id: string;
      readonly runcRoot: string;
      readonly runc: string;
    }
  | { readonly method: 'create'; readonly bundle: string; readonly io: Stdio }
  | { readonly method: 'start'; readonly execId: string }
  /** Registers an exec process (not started); its OCI process spec is already at `processFile`. */
  | { readonly method: 'exec'; readonly execId: string; readonly io: Stdio; readonly processFile: string }
  | { readonly method: 'state' }
  | { readonly method: 'resize'; readonly execId: string; readonly width: number; readonly height: number }
  | { readonly method: 'closeIO'; readonly execId: string }
  | { readonly method: 'deleteExec'; readonly execId: string }
  /** `runc kill [--all] <id> <signal>` of the task's init process (the agent's Kill). */
  | { readonly method: 'kill'; readonly signal: number; readonly all: boolean }
  /** `runc delete --force` of the task (the agent's Delete, before `shutdown`). */
  | { readonly method: 'delete' }
  /** The supervisor lets go of the task and closes its connections (the task's processes are gone). */
  | { readonly method: 'shutdown' };

export interface ErrorBody {
  /** A Berth ErrorCode value. */
  readonly code: string;
  readonly message: string;
}

export type Reply =
  | { readonly seq: number; readonly ok: true; readonly result: unknown }
  | { readonly seq: number; readonly ok: false; readonly error: ErrorBody };

export interface ExitNotice {
  readonly event: 'exit';
  readonly execId: string;
  readonly exit: Exit;
}

export type StateResult = { readonly id: string; readonly processes: readonly ProcessState[] };
export type PidResult = { readonly pid: number };

/** Where a process's exit status is kept until the task is deleted. */
export const exitFile = (execId: string): string => (execId === '' ? 'init.exit' : `exec-${execId}.exit`);
export const pidFile = (execId: string): string => (execId === '' ? 'init.pid' : `exec-${execId}.pid`);
export const socketName = 'shim.sock';
/** The node supervisor's own socket, in the tasks root. */
export const supervisorSocketName = 'supervisor.sock';
