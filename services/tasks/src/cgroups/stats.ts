import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  BlkIOEntry,
  BlkIOStat,
  MemoryEntry,
  MemoryStat as V1MemoryStat,
  Metrics as V1Metrics,
} from '@berth/proto/containerd/cgroups/v1/metrics';
import type {
  IOEntry,
  MemoryStat as V2MemoryStat,
  Metrics as V2Metrics,
} from '@berth/proto/containerd/cgroups/v2/metrics';

/**
 * A container's cgroup statistics, read from the cgroup filesystem as containerd's cgroups library reads
 * them, in containerd's metrics types. runc records where it put the container (`cgroup_paths` in its
 * state.json): one directory per controller on cgroup v1, the unified directory under key "" on v2.
 */
export type CgroupStats =
  | { readonly version: 1; readonly metrics: V1Metrics }
  | { readonly version: 2; readonly metrics: V2Metrics };

/** The container's cgroup directories as runc recorded them, or undefined when runc has no state for it. */
export async function cgroupPaths(runcRoot: string, id: string): Promise<Record<string, string> | undefined> {
  try {
    const state = JSON.parse(await readFile(join(runcRoot, id, 'state.json'), 'utf8')) as {
      cgroup_paths?: Record<string, string>;
    };
    return state.cgroup_paths;
  } catch {
    return undefined;
  }
}

export async function readStats(paths: Readonly<Record<string, string>>): Promise<CgroupStats> {
  // Hybrid hosts (v1 controllers plus a unified tree holding no controller) also record "": v1 wins there.
  const unified = paths[''];
  const v1 = Object.keys(paths).some((k) => k !== '');
  if (unified !== undefined && !v1) return { version: 2, metrics: await readV2(unified) };
  return { version: 1, metrics: await readV1(paths) };
}

/**
 * A cgroup counter as a JS number. Values above 2^53 (v1's "unlimited" 9223372036854771712 = 2^63 − 4096,
 * a multiple of 4096) are kept as the nearest double, which for these page-aligned sentinels is exact;
 * anything at or past 2^64 (v2's "max" as containerd reports it, MaxUint64) becomes the largest double
 * below 2^64, which still encodes as a valid uint64.
 */
export function u64(text: string | undefined): number {
  if (text === undefined) return 0;
  const t = text.trim();
  if (t === '' || t === 'max') return t === 'max' ? maxU64 : 0;
  if (!/^\d+$/.test(t)) return 0;
  const big = BigInt(t);
  return big >= 2n ** 64n - 1024n ? maxU64 : Number(big);
}
/** The largest double below 2^64 (2^64 − 2048). */
const maxU64 = Number(2n ** 64n - 2048n);

async function read(dir: string | undefined, file: string): Promise<string | undefined> {
  if (dir === undefined) return undefined;
  try {
    return await readFile(join(dir, file), 'utf8');
  } catch {
    return undefined;
  }
}

/** `key value` lines (memory.stat, cpu.stat, …) as a map of numbers. */
export function keyValues(text: string | undefined): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of (text ?? '').split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined) out.set(k, u64(v));
  }
  return out;
}

const devNames = new Map<string, string>();
async function deviceName(major: number, minor: number): Promise<string> {
  const key = `${major}:${minor}`;
  const known = devNames.get(key);
  if (known !== undefined) return known;
  const uevent = await read(`/sys/dev/block/${key}`, 'uevent');
  const name = /^DEVNAME=(.*)$/m.exec(uevent ?? '')?.[1];
  const dev = name ? `/dev/${name}` : '';
  devNames.set(key, dev);
  return dev;
}

async function readV1(paths: Readonly<Record<string, string>>): Promise<V1Metrics> {
  const cpuacct = paths.cpuacct ?? paths.cpu;
  const memory = paths.memory;
  const pidsDir = paths.pids;
  const blkio = paths.blkio;
  const [usage, perCpu, cpuacctStat, cpuStat, memStat, pidsCurrent, pidsMax] = await Promise.all([
    read(cpuacct, 'cpuacct.usage'),
    read(cpuacct, 'cpuacct.usage_percpu'),
    read(cpuacct, 'cpuacct.stat'),
    read(paths.cpu ?? cpuacct, 'cpu.stat'),
    read(memory, 'memory.stat'),
    read(pidsDir, 'pids.current'),
    read(pidsDir, 'pids.max'),
  ]);
  // cpuacct.stat counts USER_HZ (100 Hz on Linux) ticks.
  const ticks = keyValues(cpuacctStat);
  const throttle = keyValues(cpuStat);
  const entry = async (prefix: string): Promise<MemoryEntry> => {
    const [limit, use, max, failcnt] = await Promise.all([
      read(memory, `${prefix}.limit_in_bytes`),
      read(memory, `${prefix}.usage_in_bytes`),
      read(memory, `${prefix}.max_usage_in_bytes`),
      read(memory, `${prefix}.failcnt`),
    ]);
    return { limit: u64(limit), usage: u64(use), max: u64(max), failcnt: u64(failcnt) };
  };
  const [memUsage, swap, kernel, kernelTcp, oomControl] = await Promise.all([
    entry('memory'),
    entry('memory.memsw'),
    entry('memory.kmem'),
    entry('memory.kmem.tcp'),
    read(memory, 'memory.oom_control'),
  ]);
  const ms = keyValues(memStat);
  const g = (k: string): number => ms.get(k) ?? 0;
  const mem: V1MemoryStat = {
    cache: g('cache'),
    rss: g('rss'),
    rssHuge: g('rss_huge'),
    mappedFile: g('mapped_file'),
    dirty: g('dirty'),
    writeback: g('writeback'),
    pgPgIn: g('pgpgin'),
    pgPgOut: g('pgpgout'),
    pgFault: g('pgfault'),
    pgMajFault: g('pgmajfault'),
    inactiveAnon: g('inactive_anon'),
    activeAnon: g('active_anon'),
    inactiveFile: g('inactive_file'),
    activeFile: g('active_file'),
    unevictable: g('unevictable'),
    hierarchicalMemoryLimit: g('hierarchical_memory_limit'),
    hierarchicalSwapLimit: g('hierarchical_memsw_limit'),
    totalCache: g('total_cache'),
    totalRss: g('total_rss'),
    totalRssHuge: g('total_rss_huge'),
    totalMappedFile: g('total_mapped_file'),
    totalDirty: g('total_dirty'),
    totalWriteback: g('total_writeback'),
    totalPgPgIn: g('total_pgpgin'),
    totalPgPgOut: g('total_pgpgout'),
    totalPgFault: g('total_pgfault'),
    totalPgMajFault: g('total_pgmajfault'),
    totalInactiveAnon: g('total_inactive_anon'),
    totalActiveAnon: g('total_active_anon'),
    totalInactiveFile: g('total_inactive_file'),
    totalActiveFile: g('total_active_file'),
    totalUnevictable: g('total_unevictable'),
    usage: memUsage,
    swap,
    kernel,
    kernelTcp,
  };
  const oom = keyValues(oomControl);
  return {
    hugetlb: [],
    pids: { current: u64(pidsCurrent), limit: pidsMax?.trim() === 'max' ? 0 : u64(pidsMax) },
    cpu: {
      usage: {
        total: u64(usage),
        kernel: (ticks.get('system') ?? 0) * 10_000_000,
        user: (ticks.get('user') ?? 0) * 10_000_000,
        perCpu: (perCpu ?? '').trim().split(/\s+/).filter(Boolean).map(u64),
      },
      throttling: {
        periods: throttle.get('nr_periods') ?? 0,
        throttledPeriods: throttle.get('nr_throttled') ?? 0,
        throttledTime: throttle.get('throttled_time') ?? 0,
      },
    },
    memory: mem,
    blkio: await readBlkio(blkio),
    rdma: undefined,
    network: [],
    cgroupStats: undefined,
    memoryOomControl: {
      oomKillDisable: oom.get('oom_kill_disable') ?? 0,
      underOom: oom.get('under_oom') ?? 0,
      oomKill: oom.get('oom_kill') ?? 0,
    },
  };
}

/** blkio: the CFQ `*_recursive` files when the kernel fills them, else the throttle counters, as containerd. */
async function readBlkio(dir: string | undefined): Promise<BlkIOStat> {
  const entries = async (name: string): Promise<BlkIOEntry[]> => {
    let text = await read(dir, `blkio.${name}`);
    if (!text || text.trim() === '' || /^Total 0\s*$/.test(text.trim())) {
      const throttled = name.replace('_recursive', '');
      text = (await read(dir, `blkio.throttle.${name}`)) ?? (await read(dir, `blkio.throttle.${throttled}`));
    }
    const out: BlkIOEntry[] = [];
    for (const line of (text ?? '').split('\n')) {
      const parts = line.trim().split(/\s+/);
      const dev = parts[0] ?? '';
      const m = /^(\d+):(\d+)$/.exec(dev);
      if (!m) continue;
      const major = Number(m[1]);
      const minor = Number(m[2]);
      const [op, value] = parts.length === 3 ? [parts[1] ?? '', parts[2]] : ['', parts[1]];
      out.push({ op, device: await deviceName(major, minor), major, minor, value: u64(value) });
    }
    return out;
  };
  const [serviceBytes, serviced, queued, serviceTime, waitTime, merged, time, sectors] = await Promise.all([
    entries('io_service_bytes_recursive'),
    entries('io_serviced_recursive'),
    entries('io_queued_recursive'),
    entries('io_service_time_recursive'),
    entries('io_wait_time_recursive'),
    entries('io_merged_recursive'),
    entries('time_recursive'),
    entries('sectors_recursive'),
  ]);
  return {
    ioServiceBytesRecursive: serviceBytes,
    ioServicedRecursive: serviced,
    ioQueuedRecursive: queued,
    ioServiceTimeRecursive: serviceTime,
    ioWaitTimeRecursive: waitTime,
    ioMergedRecursive: merged,
    ioTimeRecursive: time,
    sectorsRecursive: sectors,
  };
}

async function readV2(dir: string): Promise<V2Metrics> {
  const [cpuStat, memStat, memCurrent, memMax, swapCurrent, swapMax, pidsCurrent, pidsMax, ioStat, events] =
    await Promise.all([
      read(dir, 'cpu.stat'),
      read(dir, 'memory.stat'),
      read(dir, 'memory.current'),
      read(dir, 'memory.max'),
      read(dir, 'memory.swap.current'),
      read(dir, 'memory.swap.max'),
      read(dir, 'pids.current'),
      read(dir, 'pids.max'),
      read(dir, 'io.stat'),
      read(dir, 'memory.events'),
    ]);
  const cpu = keyValues(cpuStat);
  const ms = keyValues(memStat);
  const g = (k: string): number => ms.get(k) ?? 0;
  const memory: V2MemoryStat = {
    anon: g('anon'),
    file: g('file'),
    kernelStack: g('kernel_stack'),
    slab: g('slab'),
    sock: g('sock'),
    shmem: g('shmem'),
    fileMapped: g('file_mapped'),
    fileDirty: g('file_dirty'),
    fileWriteback: g('file_writeback'),
    anonThp: g('anon_thp'),
    inactiveAnon: g('inactive_anon'),
    activeAnon: g('active_anon'),
    inactiveFile: g('inactive_file'),
    activeFile: g('active_file'),
    unevictable: g('unevictable'),
    slabReclaimable: g('slab_reclaimable'),
    slabUnreclaimable: g('slab_unreclaimable'),
    pgfault: g('pgfault'),
    pgmajfault: g('pgmajfault'),
    workingsetRefault: g('workingset_refault'),
    workingsetActivate: g('workingset_activate'),
    workingsetNodereclaim: g('workingset_nodereclaim'),
    pgrefill: g('pgrefill'),
    pgscan: g('pgscan'),
    pgsteal: g('pgsteal'),
    pgactivate: g('pgactivate'),
    pgdeactivate: g('pgdeactivate'),
    pglazyfree: g('pglazyfree'),
    pglazyfreed: g('pglazyfreed'),
    thpFaultAlloc: g('thp_fault_alloc'),
    thpCollapseAlloc: g('thp_collapse_alloc'),
    usage: u64(memCurrent),
    usageLimit: u64(memMax),
    swapUsage: u64(swapCurrent),
    swapLimit: u64(swapMax),
  };
  const io: IOEntry[] = [];
  for (const line of (ioStat ?? '').split('\n')) {
    const [dev, ...kvs] = line.trim().split(/\s+/);
    const m = /^(\d+):(\d+)$/.exec(dev ?? '');
    if (!m) continue;
    const kv = new Map(kvs.map((p) => p.split('=') as [string, string]));
    io.push({
      major: Number(m[1]),
      minor: Number(m[2]),
      rbytes: u64(kv.get('rbytes')),
      wbytes: u64(kv.get('wbytes')),
      rios: u64(kv.get('rios')),
      wios: u64(kv.get('wios')),
    });
  }
  const ev = keyValues(events);
  return {
    pids: { current: u64(pidsCurrent), limit: pidsMax?.trim() === 'max' ? 0 : u64(pidsMax) },
    cpu: {
      usageUsec: cpu.get('usage_usec') ?? 0,
      userUsec: cpu.get('user_usec') ?? 0,
      systemUsec: cpu.get('system_usec') ?? 0,
      nrPeriods: cpu.get('nr_periods') ?? 0,
      nrThrottled: cpu.get('nr_throttled') ?? 0,
      throttledUsec: cpu.get('throttled_usec') ?? 0,
    },
    memory,
    rdma: undefined,
    io: { usage: io },
    hugetlb: [],
    memoryEvents: {
      low: ev.get('low') ?? 0,
      high: ev.get('high') ?? 0,
      max: ev.get('max') ?? 0,
      oom: ev.get('oom') ?? 0,
      oomKill: ev.get('oom_kill') ?? 0,
    },
  };
}

/** The cgroup's OOM kill count: v1 memory.oom_control `oom_kill`, v2 memory.events `oom_kill`. */
export async function oomKills(paths: Readonly<Record<string, string>>): Promise<number> {
  const memory = paths.memory;
  if (memory !== undefined) return keyValues(await read(memory, 'memory.oom_control')).get('oom_kill') ?? 0;
  return keyValues(await read(paths[''], 'memory.events')).get('oom_kill') ?? 0;
}
