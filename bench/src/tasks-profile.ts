/**
 * Where a `ctr run --rm` and a `ctr run -d` spend their time, on berthd and on containerd: each daemon is
 * reached through a timestamped gRPC tap (`../shared/tools/grpc-tap.py` with a monotonic time per line), berthd
 * runs under `node --cpu-prof`. After `warmup` runs each, `runs` × `ctr run --rm … true` then `runs` × `ctr
 * run -d … sleep 600` (then killed and removed, outside the window) on each daemon. Prints, per daemon and
 * per gRPC method, the median time from the call's headers to its status, and the window (monotonic µs) for
 * restricting the CPU profile (`profile-summary.js`).
 *
 *   pnpm --filter @berth/bench run tasks-profile [--runs 30] [--warmup 100] [--out DIR]
 */
import { spawn } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startBerthd } from '@berth/e2e/berthd';
import { startContainerd } from '@berth/testing/containerd';
import { busyboxImage, pushImage } from '@berth/testing/images';
import { startRegistry } from '@berth/testing/registry';
import { cpuMs, sh } from './proc.js';
import { summarize } from './stats.js';

const { values } = parseArgs({
  options: { runs: { type: 'string' }, warmup: { type: 'string' }, out: { type: 'string' } },
});
const runs = Number(values.runs ?? 30);
const warmup = Number(values.warmup ?? 100);
const out = values.out ?? '/tmp/berth-tasks-profile';
/** The shared gRPC tap (needs python3-hpack); a copy that stamps each line with a monotonic time runs here. */
const sharedTap = process.env.BERTH_TAP ?? fileURLToPath(new URL('../../../shared/tools/grpc-tap.py', import.meta.url));

const ctr = (socket: string, ...args: string[]): Promise<{ code: number | null; out: string }> =>
  sh('ctr', ['--address', socket, '--namespace', 'bench', ...args]);
const monoUs = (): number => Number(process.hrtime.bigint() / 1000n);

interface TapLine {
  conn: number;
  sid: number;
  ev: string;
  path?: string;
  t: number;
  status?: string;
}

const span = (xs: readonly TapLine[]): number => ((xs.at(-1)?.t ?? 0) - (xs[0]?.t ?? 0)) * 1000;

async function main(): Promise<void> {
  await mkdir(out, { recursive: true });
  const tapScript = join(out, 'grpc-tap-timed.py');
  const tapSource = await readFile(sharedTap, 'utf8');
  if (!tapSource.includes('def log(d):')) throw new Error(`${sharedTap}: no log(d) to stamp`);
  await writeFile(tapScript, tapSource.replace('def log(d):', 'def log(d):\n    d["t"] = time.monotonic()'));
  const registry = await startRegistry();
  const ref = await pushImage(registry, 'bench/busybox', 'latest', await busyboxImage());
  // The event loop's delay, per phase: bench/preload/event-loop-delay.mjs writes it on SIGUSR2.
  const eldFile = join(out, 'event-loop-delay.jsonl');
  const preload = fileURLToPath(new URL('../preload/event-loop-delay.mjs', import.meta.url));
  const berth = await startBerthd({
    dir: join(out, 'berthd'),
    nodeArgs: ['--cpu-prof', `--cpu-prof-dir=${out}`, '--import', preload],
    env: { BERTH_ELD_FILE: eldFile },
  });
  const containerd = await startContainerd();
  const taps = [];
  const daemons = [
    { name: 'berth', upstream: berth.socket, pid: berth.child.pid },
    { name: 'containerd', upstream: containerd.socket, pid: containerd.pid },
  ];
  for (const d of daemons) {
    const sock = join(out, `${d.name}-tap.sock`);
    const log = join(out, `${d.name}-tap.jsonl`);
    taps.push(spawn('/usr/bin/python3', [tapScript, sock, d.upstream, log], { stdio: 'ignore' }));
    Object.assign(d, { sock, log });
  }
  await new Promise((r) => setTimeout(r, 500));
  const windows: Record<string, { from: number; to: number }> = {};
  try {
    for (const d of daemons) {
      const p = await ctr(d.upstream, 'images', 'pull', '--plain-http', ref);
      if (p.code !== 0) throw new Error(p.out);
      for (let i = 0; i < warmup; i++) await ctr(d.upstream, 'run', '--rm', ref, `w${i}`, 'true');
    }
    const cpu: Record<string, number> = {};
    for (const phase of ['rm', 'detached'] as const) {
      for (const d of daemons) {
        const sock = (d as unknown as { sock: string }).sock;
        if (d.name === 'berth' && d.pid) process.kill(d.pid, 'SIGUSR2'); // starts the phase's event-loop histogram
        const from = monoUs();
        const c0 = await cpuMs(d.pid);
        for (let i = 0; i < runs; i++) {
          const args =
            phase === 'rm' ? ['run', '--rm', ref, `p${i}`, 'true'] : ['run', '-d', ref, `d${i}`, 'sleep', '600'];
          const r = await ctr(sock, ...args);
          if (r.code !== 0) throw new Error(r.out);
        }
        cpu[`${d.name} ${phase}`] = ((await cpuMs(d.pid)) - c0) / runs;
        if (d.name === 'berth' && d.pid) process.kill(d.pid, 'SIGUSR2'); // writes it
        windows[`${d.name} ${phase}`] = { from, to: monoUs() };
        if (phase === 'detached') {
          for (let i = 0; i < runs; i++) await ctr(d.upstream, 'tasks', 'kill', '-s', 'SIGKILL', `d${i}`);
          await new Promise((r) => setTimeout(r, 500));
          for (let i = 0; i < runs; i++) {
            await ctr(d.upstream, 'tasks', 'rm', `d${i}`);
            await ctr(d.upstream, 'containers', 'rm', `d${i}`);
          }
        }
      }
    }
    console.log('daemon CPU per run (ms):', JSON.stringify(cpu));
    console.log('windows (monotonic µs):', JSON.stringify(windows));
    await new Promise((r) => setTimeout(r, 200));
    const eld = (await readFile(eldFile, 'utf8')).split('\n').filter(Boolean);
    // Lines: before rm (warm-up), rm, between, detached.
    console.log(`berthd event-loop delay (ms), run --rm: ${eld[1]}; run -d: ${eld[3]}`);
    for (const d of daemons) {
      const lines = (await readFile((d as unknown as { log: string }).log, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as TapLine);
      for (const phase of ['rm', 'detached']) {
        const w = windows[`${d.name} ${phase}`];
        if (!w) continue;
        const starts = new Map<string, TapLine>();
        const byPath = new Map<string, number[]>();
        for (const l of lines) {
          if (l.t * 1e6 < w.from || l.t * 1e6 > w.to) continue;
          const key = `${l.conn}/${l.sid}`;
          if (l.ev === 'call') starts.set(key, l);
          if (l.ev === 'status') {
            const s = starts.get(key);
            if (!s?.path) continue;
            const xs = byPath.get(s.path) ?? [];
            xs.push((l.t - s.t) * 1000);
            byPath.set(s.path, xs);
          }
        }
        // One connection per ctr: the connection whose span is the median, call by call (offsets in ms).
        const conns = new Map<number, TapLine[]>();
        for (const l of lines) {
          if (l.t * 1e6 < w.from || l.t * 1e6 > w.to || (l.ev !== 'call' && l.ev !== 'status')) continue;
          const xs = conns.get(l.conn) ?? [];
          xs.push(l);
          conns.set(l.conn, xs);
        }
        const spans = [...conns.values()].filter((xs) => xs.length > 4).sort((a, b) => span(a) - span(b));
        const mid = spans[Math.floor(spans.length / 2)];
        if (mid) {
          const t0 = mid[0]?.t ?? 0;
          const paths = new Map<number, string>();
          console.log(
            `${d.name} ${phase}: median connection (${span(mid).toFixed(1)} ms between first call and last status)`,
          );
          for (const l of mid) {
            if (l.ev === 'call') paths.set(l.sid, l.path ?? '');
            console.log(
              `  ${((l.t - t0) * 1000).toFixed(2).padStart(8)}  ${l.ev.padEnd(6)} ${paths.get(l.sid) ?? ''} ${l.status ?? ''}`,
            );
          }
        }
        console.log(`${d.name} ${phase}: per call, median ms (count)`);
        for (const [path, xs] of [...byPath].sort()) {
          const s = summarize(xs);
          console.log(
            `  ${path.padEnd(56)} ${s.p50.toFixed(2).padStart(8)} p90 ${s.p90.toFixed(2).padStart(8)} (${xs.length})`,
          );
        }
      }
    }
  } finally {
    for (const t of taps) t.kill();
    await berth.stop();
    await containerd.stop();
    await registry.stop();
  }
}

await main();
