import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryEntry, Metrics as V1Metrics } from '@berth/proto/containerd/cgroups/v1/metrics';
import { Metrics as V2Metrics } from '@berth/proto/containerd/cgroups/v2/metrics';
import { afterEach, describe, expect, it } from 'vitest';
import { readStats, u64 } from './stats.js';

const maxU64 = Number(2n ** 64n - 2048n);

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function fixture(files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'berth-cgroup-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, name, '..'), { recursive: true });
    await writeFile(join(dir, name), text);
  }
  return dir;
}

/** A uint64 varint field's value, read back exactly (the generated decoder refuses values above 2^53). */
function varintField(buf: Uint8Array, field: number): bigint | undefined {
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[i++] ?? 0;
      v |= BigInt(b & 0x7f) << shift;
      shift += 7n;
      if ((b & 0x80) === 0) return v;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    if ((key & 7) !== 0) throw new Error('only varints expected');
    const v = varint();
    if (key >> 3 === field) return v;
  }
  return undefined;
}

describe('u64', () => {
  it('keeps cgroup v1 "unlimited" exact and clamps what does not fit a uint64 double', () => {
    expect(BigInt(u64('9223372036854771712\n'))).toBe(9223372036854771712n);
    expect(u64('max')).toBe(maxU64);
    expect(u64('18446744073709551615')).toBe(maxU64);
    expect(u64('')).toBe(0);
    expect(u64(undefined)).toBe(0);
    expect(u64('12345')).toBe(12345);
  });
});

describe('readStats', () => {
  it('reads cgroup v1 controllers into io.containerd.cgroups.v1.Metrics, unlimited memory encoded exactly', async () => {
    const root = await fixture({
      'cpuacct/cpuacct.usage': '123456789\n',
      'cpuacct/cpuacct.usage_percpu': '100 200 \n',
      'cpuacct/cpuacct.stat': 'user 3\nsystem 2\n',
      'cpu/cpu.stat': 'nr_periods 4\nnr_throttled 1\nthrottled_time 99\n',
      'memory/memory.stat':
        'cache 4096\nrss 8192\ntotal_cache 4096\ntotal_rss 8192\nhierarchical_memory_limit 9223372036854771712\n',
      'memory/memory.usage_in_bytes': '733184\n',
      'memory/memory.limit_in_bytes': '9223372036854771712\n',
      'memory/memory.max_usage_in_bytes': '800000\n',
      'memory/memory.failcnt': '0\n',
      'memory/memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n',
      'pids/pids.current': '3\n',
      'pids/pids.max': 'max\n',
      'blkio/blkio.throttle.io_service_bytes_recursive': '7:0 Read 4096\n7:0 Write 512\nTotal 4608\n',
    });
    const paths = {
      '': join(root, 'unified'),
      cpu: join(root, 'cpu'),
      cpuacct: join(root, 'cpuacct'),
      memory: join(root, 'memory'),
      pids: join(root, 'pids'),
      blkio: join(root, 'blkio'),
    };
    const stats = await readStats(paths);
    expect(stats.version).toBe(1);
    if (stats.version !== 1) return;
    const m = stats.metrics;
    expect(m.cpu?.usage).toEqual({ total: 123456789, kernel: 20_000_000, user: 30_000_000, perCpu: [100, 200] });
    expect(m.cpu?.throttling).toEqual({ periods: 4, throttledPeriods: 1, throttledTime: 99 });
    expect(m.memory?.usage?.usage).toBe(733184);
    expect(m.memory?.totalRss).toBe(8192);
    expect(m.memoryOomControl?.oomKill).toBe(2);
    expect(m.pids).toEqual({ current: 3, limit: 0 });
    expect(m.blkio?.ioServiceBytesRecursive.map((e) => [e.major, e.minor, e.op, e.value])).toEqual([
      [7, 0, 'Read', 4096],
      [7, 0, 'Write', 512],
    ]);
    expect(() => V1Metrics.encode(m).finish()).not.toThrow();
    // The limit travels as the exact uint64, though it is past 2^53.
    const entry = MemoryEntry.encode(m.memory?.usage ?? { limit: 0, usage: 0, max: 0, failcnt: 0 }).finish();
    expect(varintField(entry, 1)).toBe(9223372036854771712n);
  });

  it('reads the unified hierarchy into io.containerd.cgroups.v2.Metrics', async () => {
    const dir = await fixture({
      'cpu.stat': 'usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n',
      'memory.stat': 'anon 4096\nfile 8192\npgfault 10\n',
      'memory.current': '12288\n',
      'memory.max': 'max\n',
      'memory.swap.current': '0\n',
      'memory.swap.max': 'max\n',
      'memory.events': 'low 0\nhigh 0\nmax 1\noom 1\noom_kill 1\n',
      'pids.current': '2\n',
      'pids.max': '100\n',
      'io.stat': '8:0 rbytes=1024 wbytes=2048 rios=1 wios=2 dbytes=0 dios=0\n',
    });
    const stats = await readStats({ '': dir });
    expect(stats.version).toBe(2);
    if (stats.version !== 2) return;
    const m = stats.metrics;
    expect(m.cpu?.usageUsec).toBe(5000);
    expect(m.memory?.anon).toBe(4096);
    expect(m.memory?.usage).toBe(12288);
    expect(m.memory?.usageLimit).toBe(maxU64);
    expect(m.memoryEvents?.oomKill).toBe(1);
    expect(m.pids).toEqual({ current: 2, limit: 100 });
    expect(m.io?.usage).toEqual([{ major: 8, minor: 0, rbytes: 1024, wbytes: 2048, rios: 1, wios: 2 }]);
    // "max" encodes as a valid uint64 (the generated encoder rejects 2^64 and above).
    expect(() => V2Metrics.encode(m).finish()).not.toThrow();
  });
});
