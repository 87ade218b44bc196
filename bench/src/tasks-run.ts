/**
 * Task latency, side by side on this machine: `ctr run --rm IMAGE id true` against berthd and against a
 * private containerd 1.6 (same image, pulled from the same local registry), bare `runc run` of the same
 * rootfs, and `ctr tasks start` of an existing container (the tasks agent alone: Create, Wait‖Start, Get,
 * Delete). Then the time to start N detached containers (`ctr run -d`, one after another) on each.
 * Rounds alternate between the daemons so background load hits both alike. Both daemons first get `warmup`
 * runs: berthd is a Node process whose JIT keeps compiling for its first ~100 runs (its CPU per run falls
 * from ~80 to ~50 ms); the median of the first runs is reported as `cold`.
 *
 *   pnpm --filter @berth/bench tasks [--runs 20] [--detached 50] [--warmup 100] [--postgres postgres://…]
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startBerthd } from '@berth/e2e/berthd';
import { startContainerd } from '@berth/testing/containerd';
import { busyboxImage, pushImage } from '@berth/testing/images';
import { startRegistry } from '@berth/testing/registry';
import { cpuMs } from './proc.js';
import { fmt, summarize } from './stats.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string' },
    detached: { type: 'string' },
    warmup: { type: 'string' },
    postgres: { type: 'string' },
  },
});
const runs = Number(values.runs ?? 20);
const detached = Number(values.detached ?? 50);
const warmup = Math.max(1, Number(values.warmup ?? 100));

function sh(cmd: string, args: readonly string[], stdin = ''): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    child.once('close', (code) => resolve({ code, out }));
    child.stdin.end(stdin);
  });
}

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

    const starts: Record<string, number> = {};
    for (const d of daemons) {
      const t = process.hrtime.bigint();
      for (let i = 0; i < detached; i++)
        await timed('ctr', ctrArgs(d.socket, 'run', '-d', ref, `d${i}`, 'sleep', '600'));
      starts[d.name] = Number(process.hrtime.bigint() - t) / 1e6;
      for (let i = 0; i < detached; i++) {
        await sh('ctr', ctrArgs(d.socket, 'tasks', 'kill', '-s', 'SIGKILL', `d${i}`));
      }
      for (let i = 0; i < detached; i++) {
        for (let tries = 0; tries < 50; tries++) {
          if ((await sh('ctr', ctrArgs(d.socket, 'tasks', 'rm', `d${i}`))).code === 0) break;
          await new Promise((r) => setTimeout(r, 50));
        }
        await sh('ctr', ctrArgs(d.socket, 'containers', 'rm', `d${i}`));
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
    console.log(`${detached} detached starts (ctr run -d, sequential):`);
    for (const [name, ms] of Object.entries(starts)) console.log(`  ${name.padEnd(24)} ${(ms / 1000).toFixed(2)} s`);
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
