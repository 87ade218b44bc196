import { execFile } from 'node:child_process';
import { ErrorCode, ServiceError } from '@berth/common/errors';

/** The runc commands the agent runs itself; those that own processes (create, exec) run in the supervisor. */
export interface Runc {
  kill(id: string, signal: number, all: boolean): Promise<void>;
  pause(id: string): Promise<void>;
  resume(id: string): Promise<void>;
  ps(id: string): Promise<number[]>;
  /** `runc update -r <file>` with the JSON LinuxResources in `resourcesFile`. */
  update(id: string, resourcesFile: string): Promise<void>;
  delete(id: string, force: boolean): Promise<void>;
  /** runc's view, or undefined when runc does not know the container. */
  state(id: string): Promise<RuncState | undefined>;
}

export interface RuncState {
  readonly id: string;
  readonly pid: number;
  readonly status: 'created' | 'running' | 'pausing' | 'paused' | 'stopped';
}

export class RuncError extends Error {
  constructor(
    message: string,
    readonly stderr: string,
  ) {
    super(message);
  }
}

export function createRunc(binary: string, root: string): Runc {
  const run = (argv: readonly string[]): Promise<string> =>
    new Promise((resolve, reject) => {
      execFile(binary, ['--root', root, ...argv], { maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
        if (err) {
          reject(new RuncError(lastLine(stderr) || err.message, stderr));
        } else resolve(stdout);
      });
    });
  return {
    async kill(id, signal, all) {
      await run(['kill', ...(all ? ['--all'] : []), id, String(signal)]);
    },
    async pause(id) {
      await run(['pause', id]);
    },
    async resume(id) {
      await run(['resume', id]);
    },
    async ps(id) {
      const out = await run(['ps', '--format', 'json', id]);
      const pids = JSON.parse(out.trim() || '[]') as unknown;
      return Array.isArray(pids) ? pids.filter((p): p is number => typeof p === 'number') : [];
    },
    async update(id, resourcesFile) {
      await run(['update', '--resources', resourcesFile, id]);
    },
    async delete(id, force) {
      await run(['delete', ...(force ? ['--force'] : []), id]);
    },
    async state(id) {
      try {
        return JSON.parse(await run(['state', id])) as RuncState;
      } catch (e) {
        if (e instanceof RuncError && /does not exist|not exist/.test(e.message)) return undefined;
        throw e;
      }
    },
  };
}

/** runc's message without its log prefix (`time=… level=error msg="…"`). */
function lastLine(stderr: string): string {
  const line = stderr.trim().split('\n').pop() ?? '';
  const m = /msg="((?:[^"\\]|\\.)*)"/.exec(line);
  return m?.[1]?.replace(/\\"/g, '"') ?? line;
}

/** runc's words for a process that is gone, as containerd's shim recognizes them (`checkKillError`). */
export function isProcessGone(e: unknown): boolean {
  const msg = e instanceof Error ? e.message : String(e);
  return /process already finished|container not running|no such process|not running/i.test(msg);
}

export function runcFailure(e: unknown, context: string): ServiceError {
  if (e instanceof ServiceError) return e;
  return new ServiceError(ErrorCode.Unknown, `${context}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}
