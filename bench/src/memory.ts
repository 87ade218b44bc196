/**
 * Resident memory of a node running N `sleep` containers, berthd (all-in-one, embedded defaults: PGlite,
 * in-process events) beside a private containerd 1.6 on the same machine, both driven by the real `ctr`:
 *   1. each daemon idle after start (and after pulling the busybox image),
 *   2. with N containers started by `ctr run -d IMAGE id sleep 3600`,
 * counting the daemon and its supervisors (berthd's node supervisor; containerd's containerd-shim-runc-v2
 * per container), not the containers themselves. Per process: VmRSS and VmHWM from /proc/<pid>/status, Pss
 * from /proc/<pid>/smaps_rollup (RSS counts shared pages, such as an executable's, once per process; PSS
 * splits them among the processes sharing them, so PSS sums to what the processes really cost together).
 *
 *   pnpm --filter @berth/bench memory [--containers 100] [--systems berthd,containerd]
 */
import { readdir, readFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { startBerthd } from '@berth/e2e/berthd';
import { startContainerd } from '@berth/testing/containerd';
import { busyboxImage, pushImage } from '@berth/testing/images';
import { startRegistry } from '@berth/testing/registry';
import { sh } from './proc.js';

const { values } = parseArgs({
  options: {
    containers: { type: 'string', default: '100' },
    systems: { type: 'string', default: 'berthd,containerd' },
  },
});
const n = Number(values.containers);
const systems = values.systems.split(',');

interface ProcMemory {
  readonly pid: number;
  readonly rssKb: number;
  readonly hwmKb: number;
  readonly pssKb: number;
}

async function memoryOf(pid: number): Promise<ProcMemory | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (text: string, key: string): number =>
      Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
    return { pid, rssKb: kb(status, 'VmRSS'), hwmKb: kb(status, 'VmHWM'), pssKb: kb(rollup, 'Pss') };
  } catch {
    return undefined; // gone meanwhile
  }
}

/** Processes whose command line contains `marker` (a daemon's own directory or socket path). */
async function processesWith(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.replaceAll('\0', ' ').includes(marker)) pids.push(Number(entry));
  }
  return pids;
}

interface Snapshot {
  readonly daemon: ProcMemory;
  readonly supervisors: ProcMemory[];
}

const mb = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`;
const sum = (ps: readonly ProcMemory[], k: keyof ProcMemory): number => ps.reduce((s, p) => s + p[k], 0);

function describe(label: string, s: Snapshot, containers: number): string {
  const all = [s.daemon, ...s.supervisors];
  const lines = [
    `  ${label}`,
    `    daemon        RSS ${mb(s.daemon.rssKb)} (high-water ${mb(s.daemon.hwmKb)}), PSS ${mb(s.daemon.pssKb)}`,
    `    supervisors   ${s.supervisors.length} processes: RSS ${mb(sum(s.supervisors, 'rssKb'))}, PSS ${mb(sum(s.supervisors, 'pssKb'))}`,
    `    total         RSS ${mb(sum(all, 'rssKb'))}, PSS ${mb(sum(all, 'pssKb'))}`,
  ];
  if (containers > 0) {
    lines.push(
      `    supervision per container: RSS ${mb(sum(s.supervisors, 'rssKb') / containers)}, PSS ${mb(sum(s.supervisors, 'pssKb') / containers)}`,
    );
  }
  return lines.join('\n');
}

interface Daemon {
  readonly name: string;
  readonly socket: string;
  readonly pid: number;
  /** What the command line of each of its supervisors contains. */
  readonly supervisorMarker: string;
  stop(): Promise<unknown>;
}

async function snapshot(d: Daemon): Promise<Snapshot> {
  const daemon = await memoryOf(d.pid);
  if (!daemon) throw new Error(`${d.name} is not running`);
  const pids = (await processesWith(d.supervisorMarker)).filter((p) => p !== d.pid);
  const supervisors = (await Promise.all(pids.map(memoryOf))).filter((m): m is ProcMemory => m !== undefined);
  return { daemon, supervisors };
}

async function startDaemon(name: string): Promise<Daemon> {
  if (name === 'containerd') {
    const c = await startContainerd();
    if (c.pid === undefined) throw new Error('containerd has no pid');
    // Its shims are `containerd-shim-runc-v2 -namespace … -address <this socket> …`.
    return { name, socket: c.socket, pid: c.pid, supervisorMarker: `-address ${c.socket}`, stop: () => c.stop() };
  }
  const b = await startBerthd();
  if (b.child.pid === undefined) throw new Error('berthd has no pid');
  // Its supervisor listens on <state>/tasks/supervisor.sock.
  return { name, socket: b.socket, pid: b.child.pid, supervisorMarker: `${b.dir}/state/tasks`, stop: () => b.stop() };
}

const ctr = (d: Daemon, ...args: string[]): Promise<{ code: number | null; out: string }> =>
  sh('ctr', ['--address', d.socket, '--namespace', 'bench-memory', ...args]);

const registry = await startRegistry();
try {
  const ref = await pushImage(registry, 'bench/busybox', 'latest', await busyboxImage());
  console.log(
    `${n} containers of ${ref} running \`sleep 3600\` on each daemon (load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')})`,
  );
  for (const name of systems) {
    const d = await startDaemon(name);
    try {
      // Settle: berthd starts its supervisor in the background and trims its allocator 10 s after start.
      await new Promise((r) => setTimeout(r, 15_000));
      const idle = await snapshot(d);
      const pull = await ctr(d, 'images', 'pull', '--plain-http', ref);
      if (pull.code !== 0) throw new Error(`${name}: pull failed: ${pull.out}`);
      const pulled = await snapshot(d);
      const t0 = Date.now();
      for (let i = 0; i < n; i++) {
        const r = await ctr(d, 'run', '-d', ref, `mem-${i}`, 'sleep', '3600');
        if (r.code !== 0) throw new Error(`${name}: ctr run -d mem-${i} failed: ${r.out}`);
      }
      const startedMs = Date.now() - t0;
      await new Promise((r) => setTimeout(r, 3_000));
      const running = await snapshot(d);
      console.log(`\n${name} (started ${n} containers in ${(startedMs / 1000).toFixed(1)} s)`);
      console.log(describe('idle after start', idle, 0));
      console.log(describe('after pulling the image', pulled, 0));
      console.log(describe(`with ${n} containers running`, running, n));
      for (let i = 0; i < n; i++) await ctr(d, 'tasks', 'kill', '-s', 'SIGKILL', `mem-${i}`);
      for (let i = 0; i < n; i++) {
        for (let tries = 0; tries < 100; tries++) {
          if ((await ctr(d, 'tasks', 'rm', `mem-${i}`)).code === 0) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        await ctr(d, 'containers', 'rm', `mem-${i}`);
      }
    } finally {
      await d.stop();
    }
  }
} finally {
  await registry.stop();
}
