import { spawn } from 'node:child_process';

export interface CtrResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CtrOptions {
  readonly namespace?: string;
  readonly input?: string | Buffer;
  readonly timeoutMs?: number;
}

/** Runs the real containerd `ctr` client against `socket`. Never throws for a non-zero exit: check `code`. */
export function ctr(socket: string, args: readonly string[], opts: CtrOptions = {}): Promise<CtrResult> {
  const full = ['--address', socket, ...(opts.namespace ? ['--namespace', opts.namespace] : []), ...args];
  return new Promise((resolve, reject) => {
    const child = spawn('ctr', full, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin.end(opts.input);
    else child.stdin.end();
  });
}

/** Splits ctr's table output into rows of whitespace-separated cells, header excluded. */
export function tableRows(stdout: string): string[][] {
  return stdout
    .trim()
    .split('\n')
    .slice(1)
    .filter((l) => l.trim() !== '')
    .map((l) => l.trim().split(/\s+/));
}

/** The offset of a `ctr content active` row (REF SIZE AGE; SIZE as go-units HumanSize, e.g. 33.55MB). */
export function activeBytes(row: readonly string[] | undefined): number {
  const m = /^([\d.]+)\s*([kMGT]?)B$/.exec(row?.[1] ?? '');
  if (!m) return 0;
  return Number(m[1]) * 1000 ** ' kMGT'.indexOf(m[2] || ' ');
}

/**
 * The rows of `ctr snapshots ls`. Cut at the header's column offsets, not at blanks: keys may hold a space
 * (containerd's unpacker names its snapshots `extract-<n> <chainID>`) and PARENT may be empty.
 */
export function snapshotRows(stdout: string): Array<{ key: string; parent: string; kind: string }> {
  const [header = '', ...lines] = stdout.split('\n');
  const parentAt = header.indexOf('PARENT');
  const kindAt = header.indexOf('KIND');
  return lines
    .filter((l) => l.trim() !== '')
    .map((l) => ({
      key: l.slice(0, parentAt).trim(),
      parent: l.slice(parentAt, kindAt).trim(),
      kind: l.slice(kindAt).trim(),
    }));
}
