/** What a test sees of processes, file descriptors and mounts through /proc: the leak checks of reliability tests. */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface ProcInfo {
  readonly pid: number;
  readonly ppid: number;
  readonly comm: string;
  /** 'T' for a stopped process, 'Z' for a zombie. */
  readonly state: string;
}

/** One process from /proc/<pid>/stat; undefined when it is gone. */
export function procInfo(pid: number): ProcInfo | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // comm is in parentheses and may itself hold spaces or parentheses: the fields after it start at the last ')'.
  const open = stat.indexOf('(');
  const close = stat.lastIndexOf(')');
  const rest = stat.slice(close + 2).split(' ');
  return { pid, comm: stat.slice(open + 1, close), state: rest[0] ?? '?', ppid: Number(rest[1]) };
}

/** Every process on the machine. */
export function allProcesses(): ProcInfo[] {
  const out: ProcInfo[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const p = procInfo(Number(name));
    if (p) out.push(p);
  }
  return out;
}

/** Descendants of `pid` (children, their children, …), optionally only those named one of `names`. */
export function descendants(pid: number, names?: readonly string[]): ProcInfo[] {
  const all = allProcesses();
  const byParent = new Map<number, ProcInfo[]>();
  for (const p of all) byParent.set(p.ppid, [...(byParent.get(p.ppid) ?? []), p]);
  const out: ProcInfo[] = [];
  const queue = [pid];
  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    for (const c of byParent.get(next) ?? []) {
      out.push(c);
      queue.push(c.pid);
    }
  }
  return names ? out.filter((p) => names.includes(p.comm)) : out;
}

/** True while `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  const p = procInfo(pid);
  return p !== undefined && p.state !== 'Z';
}

/** Mount points (from /proc/self/mountinfo) at or under `dir`. */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((mp) => mp === dir || mp.startsWith(prefix));
}

/** Open file descriptors of `pid`, with what each points at. */
export function openFds(pid: number): string[] {
  const dir = `/proc/${pid}/fd`;
  const out: string[] = [];
  for (const fd of readdirSync(dir)) {
    try {
      out.push(`${fd} ${readlinkSync(`${dir}/${fd}`)}`);
    } catch {
      // Closed while listing.
    }
  }
  return out;
}

/** Resident memory of `pid` from /proc/<pid>/status, in bytes: now (VmRSS) and its peak (VmHWM). */
export function residentMemory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: kb('VmRSS') * 1024, hwm: kb('VmHWM') * 1024 };
}

/** Polls `check` every 20 ms until it returns true or `ms` pass; resolves whether it did. */
export async function within(ms: number, check: () => boolean): Promise<boolean> {
  const end = Date.now() + ms;
  for (;;) {
    if (check()) return true;
    if (Date.now() >= end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}
