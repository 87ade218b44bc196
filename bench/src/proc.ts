import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';

/** User + system CPU time of process `pid` so far, from /proc (clock ticks of 10 ms). */
export async function cpuMs(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0;
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** User + system CPU time of process `pid` and of its children it has waited for, so far (ms); 0 once gone. */
export async function cpuWithChildrenMs(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0;
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return [11, 12, 13, 14].reduce((s, i) => s + Number(fields[i] ?? 0), 0) * 10;
}

/** Sum of cpuWithChildrenMs over `pids`. */
export async function cpuOfMs(pids: readonly (number | undefined)[]): Promise<number> {
  return (await Promise.all(pids.map((p) => cpuWithChildrenMs(p)))).reduce((s, n) => s + n, 0);
}

/**
 * Runs `cmd` to its end: its exit code and its stdout and stderr together. `stdin` is written to it (none by
 * default); a command that exits before reading it (EPIPE) is not an error of the bench.
 */
export function sh(cmd: string, args: readonly string[], stdin = ''): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('close', (code) => resolve({ code, out }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}
