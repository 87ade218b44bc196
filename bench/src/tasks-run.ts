/**
 * Task latency, side by side on this machine: `ctr run --rm IMAGE id true` against berthd and against a
 * private containerd 1.6 (same image, pulled from the same local registry), bare `runc run` of the same
 * rootfs, and `ctr tasks start` of an existing container (the tasks agent alone: Create, Wait‖Start, Get,
 * Delete). Then, as `../shared/bench/run.sh`, N detached containers started (`ctr run -d`, one after another), killed and
 * removed, in repetitions alternating the daemons.
 * Rounds alternate between the daemons so background load hits both alike. Both daemons first get `warmup`
 * runs: berthd is a Node process whose JIT keeps compiling for its first ~100 runs (its CPU per run falls
 * from ~80 to ~50 ms); the median of the first runs is reported as `cold`.
 *
 *   pnpm --filter @berth/bench run tasks [--runs 20] [--detached 50] [--bg-reps 3] [--warmup 100] [--postgres postgres://…]
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startBerthd } from '@berth/e2e/berthd';
import { startContainerd } from '@berth/testing/containerd';
import { busyboxImage, pushImage } from '@berth/testing/images';
import { startRegistry } from '@berth/testing/registry';
import { cpuMs, sh } from './proc.js';
import { fmt, summarize } from './stats.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string' },
    detached: { type: 'string' },
    warmup: { type: 'string' },
    'bg-reps': { type: 'string' },
    postgres: { type: 'string' },
  },
});
const runs = Number(values.runs ?? 20);
const detached = Number(values.detached ?? 50);
const warmup = Math.max(1, Number(values.warmup ?? 100));
const bgReps = Math.max(1, Number(values['bg-reps'] ?? 3));

async function timed(cmd: string, args: readonly string[]): Promise<number> {
  const t = process.hrtime.bigint();
  const r = await sh(cmd, args);
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.out}`);
  return ms;
}

const ctrArgs = (socket: string, ...args: string[]): string[] => ['--address', socket, '--namespace', 'bench', ...args];

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'berth-bench-tasks-'));
  const registry = await startRegistry();
  const ref = await pushImage(registry, 'bench/busybox', 'latest', await busyboxImage());
  // Metadata on PGlite (the embedded default), or on a Postgres server with --postgres URL.
  const berth = await startBerthd({
    dir: join(work, 'berthd'),
    args: values.postgres ? ['--postgres', values.postgres] : [],
  });
  const containerd = await startContainerd();
  const daemons = [
    { name: 'berth', socket: berth.socket, pid: berth.child.pid },
    { name: 'containerd', socket: containerd.socket, pid: containerd.pid },
  ];
  /** CPU time the daemon process itself spent in `ctr run --rm` (not its shims or supervisors), by daemon. */
  const daemonCpuMs: Record<string, number> = {};
  try {
    for (const d of daemons) {
      const pull = await sh('ctr', ctrArgs(d.socket, 'images', 'pull', '--plain-http', ref));
      if (pull.code !== 0) throw new Error(`${d.name}: pull failed: ${pull.out}`);
    }
    // Bare runc: the image's rootfs (mounted by ctr from containerd's snapshot) and ctr's default spec.
    const bundle = join(work, 'bundle');
    await mkdir(join(bundle, 'rootfs'), { recursive: true });
    const mounted = await sh('ctr', ctrArgs(containerd.socket, 'images', 'mount', '--rw', ref, join(bundle, 'rootfs')));
    if (mounted.code !== 0) throw new Error(`images mount: ${mounted.out}`);
    const spec = JSON.parse((await sh('ctr', ['oci', 'spec'])).out) as {
      process: { args: string[]; env?: string[] };
      root: { path: string };
      linux: { cgroupsPath?: string };
    };
    spec.process.args = ['true'];
    spec.process.env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
    spec.root.path = 'rootfs';
    spec.linux.cgroupsPath = '/bench/runc';
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    const runcRoot = join(work, 'runc');

    const samples: Record<string, number[]> = {
      berth: [],
      containerd: [],
      runc: [],
      'berth tasks start': [],
      'containerd tasks start': [],
    };
    for (const d of daemons) {
      await sh('ctr', ctrArgs(d.socket, 'containers', 'create', ref, 'ts', 'true'));
    }
    // Warm-up, alternating, the same for both: connections, caches, and for berthd (Node) the JIT, which
    // keeps compiling for the first ~100 runs of a fresh daemon. The first runs are reported as `cold`.
    const cold: Record<string, number[]> = { berth: [], containerd: [] };
    for (let i = 0; i < warmup; i++) {
      for (const d of daemons) {
        const ms = await timed('ctr', ctrArgs(d.socket, 'run', '--rm', ref, `warm${i}`, 'true'));
        if (i < runs) cold[d.name]?.push(ms);
        await timed('ctr', ctrArgs(d.socket, 'tasks', 'start', 'ts'));
      }
    }
    for (let i = 0; i < runs; i++) {
      for (const d of daemons) {
        const cpu0 = await cpuMs(d.pid);
        samples[d.name]?.push(await timed('ctr', ctrArgs(d.socket, 'run', '--rm', ref, `r${i}`, 'true')));
        daemonCpuMs[d.name] = (daemonCpuMs[d.name] ?? 0) + (await cpuMs(d.pid)) - cpu0;
        samples[`${d.name} tasks start`]?.push(await timed('ctr', ctrArgs(d.socket, 'tasks', 'start', 'ts')));
      }
      samples.runc?.push(await timed('runc', ['--root', runcRoot, 'run', '--bundle', bundle, `r${i}`]));
    }

    // As ../shared/bench/run.sh: N `ctr run -d` one after another, then `tasks kill -s SIGKILL` of each, then
    // per container `tasks rm` (retried every 20 ms until the task has stopped) and `containers rm`.
    const bg: Record<
      string,
      { start: number[]; killRm: number[]; kill: number[]; tasksRm: number[]; containersRm: number[]; retries: number }
    > = {};
    for (let rep = 0; rep < bgReps; rep++) {
      const order = rep % 2 === 0 ? daemons : [...daemons].reverse();
      for (const d of order) {
        const r = (bg[d.name] ??= { start: [], killRm: [], kill: [], tasksRm: [], containersRm: [], retries: 0 });
        await sh('sync', []);
        const t0 = process.hrtime.bigint();
        for (let i = 0; i < detached; i++)
          await timed('ctr', ctrArgs(d.socket, 'run', '-d', ref, `d${rep}-${i}`, 'sleep', '600'));
        const t1 = process.hrtime.bigint();
        let kill = 0;
        let tasksRm = 0;
        let containersRm = 0;
        for (let i = 0; i < detached; i++)
          kill += await timed('ctr', ctrArgs(d.socket, 'tasks', 'kill', '-s', 'SIGKILL', `d${rep}-${i}`));
        for (let i = 0; i < detached; i++) {
          const tr = process.hrtime.bigint();
          for (let tries = 0; tries < 50; tries++) {
            if ((await sh('ctr', ctrArgs(d.socket, 'tasks', 'rm', `d${rep}-${i}`))).code === 0) break;
            r.retries++;
            await new Promise((res) => setTimeout(res, 20));
          }
          tasksRm += Number(process.hrtime.bigint() - tr) / 1e6;
          containersRm += await timed('ctr', ctrArgs(d.socket, 'containers', 'rm', `d${rep}-${i}`));
        }
        const t2 = process.hrtime.bigint();
        r.start.push(Number(t1 - t0) / 1e6);
        r.killRm.push(Number(t2 - t1) / 1e6);
        r.kill.push(kill);
        r.tasksRm.push(tasksRm);
        r.containersRm.push(containersRm);
      }
    }

    console.log(
      `ctr run --rm ${ref} id true (${runs} runs each after ${warmup} warm-up runs, alternating; load average ${loadavg()
        .map((n) => n.toFixed(2))
        .join(' ')})`,
    );
    for (const [name, s] of Object.entries(samples)) {
      const r = summarize(s);
      console.log(
        `  ${name.padEnd(24)} median ${fmt(r.p50).padStart(12)}   p90 ${fmt(r.p90).padStart(12)}   mean ${fmt(r.mean).padStart(12)}`,
      );
    }
    const b = summarize(samples.berth ?? []);
    const c = summarize(samples.containerd ?? []);
    console.log(`  berth / containerd median: ${(b.p50 / c.p50).toFixed(2)}x`);
    const coldB = summarize(cold.berth ?? []);
    const coldC = summarize(cold.containerd ?? []);
    console.log(
      `  cold (first ${cold.berth?.length ?? 0} runs after start): berth median ${fmt(coldB.p50)}, containerd ${fmt(coldC.p50)}: ${(coldB.p50 / coldC.p50).toFixed(2)}x`,
    );
    console.log(
      `  daemon CPU per run: ${Object.entries(daemonCpuMs)
        .map(([name, ms]) => `${name} ${(ms / runs).toFixed(1)} ms`)
        .join(', ')}`,
    );
    console.log(
      `${detached} detached containers, ${bgReps} repetitions alternating (as run.sh): medians, samples in ms`,
    );
    const med = (xs: number[]): number => summarize(xs).p50;
    for (const [name, r] of Object.entries(bg)) {
      console.log(
        `  ${name.padEnd(12)} start ${med(r.start).toFixed(0)} [${r.start.map((x) => x.toFixed(0)).join(', ')}]   kill+rm ${med(r.killRm).toFixed(0)} [${r.killRm.map((x) => x.toFixed(0)).join(', ')}]`,
      );
      console.log(
        `  ${''.padEnd(12)} of kill+rm: kills ${med(r.kill).toFixed(0)}, tasks rm ${med(r.tasksRm).toFixed(0)} (${r.retries} retries in all), containers rm ${med(r.containersRm).toFixed(0)}`,
      );
    }
    if (bg.berth && bg.containerd)
      console.log(
        `  berth / containerd: start ${(med(bg.berth.start) / med(bg.containerd.start)).toFixed(2)}x, kill+rm ${(med(bg.berth.killRm) / med(bg.containerd.killRm)).toFixed(2)}x`,
      );
  } finally {
    await sh('umount', [join(work, 'bundle', 'rootfs')]);
    for (const d of daemons) {
      await sh('ctr', ctrArgs(d.socket, 'tasks', 'rm', '-f', 'ts'));
      await sh('ctr', ctrArgs(d.socket, 'containers', 'rm', 'ts'));
    }
    await berth.stop();
    await containerd.stop();
    await registry.stop();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
