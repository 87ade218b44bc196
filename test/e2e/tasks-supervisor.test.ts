import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { busyboxImage, pushImage } from '@berth/testing/images';
import { type Registry, startRegistry } from '@berth/testing/registry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr, tableRows } from './src/ctr.js';

/**
 * The node's task supervisor (services/tasks/README.md): one process holds every task of the node, is the
 * parent (subreaper) of every container's init, and leaves no zombie behind, including the orphans of a
 * container that shares the host's pid namespace.
 */

/** pid → [ppid, state] of every process, from /proc/<pid>/stat. */
async function processTable(): Promise<Map<number, { ppid: number; state: string; cmdline: string }>> {
  const table = new Map<number, { ppid: number; state: string; cmdline: string }>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const [state = '', ppid = '0'] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      table.set(Number(entry), { ppid: Number(ppid), state, cmdline });
    } catch {
      /* exited meanwhile */
    }
  }
  return table;
}

describe('task supervisor', () => {
  let registry: Registry;
  let d: BerthdProcess;
  let ref: string;
  const ns = `supervisor-e2e-${Date.now().toString(36)}`;
  const run = (args: string[]) => ctr(d.socket, args, { namespace: ns });
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    registry = await startRegistry();
    ref = await pushImage(registry, 'e2e/busybox', 'latest', await busyboxImage());
    d = await startBerthd();
    const pulled = await run(['images', 'pull', '--plain-http', ref]);
    expect(pulled.code, pulled.stderr).toBe(0);
  });

  afterAll(async () => {
    for (const id of ['one', 'two', 'orphans']) {
      await run(['tasks', 'kill', '-s', 'SIGKILL', id]);
      for (let i = 0; i < 50 && (await run(['tasks', 'rm', id])).code !== 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
      }
      await run(['containers', 'rm', id]);
    }
    await d?.stop();
    for (const c of cleanups) await c();
    await registry?.stop();
  });

  it('one process supervises every task of the node and is the parent of each container', async () => {
    for (const id of ['one', 'two']) {
      const r = await run(['run', '-d', ref, id, 'sleep', '600']);
      expect(r.code, r.stderr).toBe(0);
    }
    const tasksDir = join(d.dir, 'state', 'tasks', ns);
    const shimPids = await Promise.all(['one', 'two'].map((id) => readFile(join(tasksDir, id, 'shim.pid'), 'utf8')));
    expect(shimPids[0]).toBe(shimPids[1]);
    const supervisor = Number(shimPids[0]);
    const table = await processTable();
    // No other supervisor process (no spares kept waiting) for this node.
    const supervisors = [...table].filter(([, p]) => p.cmdline.includes(join(d.dir, 'state', 'tasks')));
    expect(supervisors.map(([pid]) => pid)).toEqual([supervisor]);
    const rows = tableRows((await run(['tasks', 'ls'])).stdout);
    for (const id of ['one', 'two']) {
      const pid = Number(rows.find((r) => r[0] === id)?.[1]);
      expect(table.get(pid)?.ppid, `parent of ${id}'s init`).toBe(supervisor);
    }
  });

  it('collects the orphans of a container in the host pid namespace: no zombie stays', async () => {
    // ctr's default spec without a pid namespace, on a busybox rootfs. Each subshell starts a short sleep
    // and exits: the sleeps are re-parented to the nearest subreaper, the supervisor.
    const work = await mkdtemp(join(tmpdir(), 'berth-supervisor-'));
    cleanups.push(() => rm(work, { recursive: true, force: true }));
    const rootfs = join(work, 'rootfs');
    for (const dir of ['bin', 'proc', 'dev', 'sys', 'tmp']) await mkdir(join(rootfs, dir), { recursive: true });
    await copyFile('/bin/busybox', join(rootfs, 'bin/busybox'));
    for (const applet of ['sh', 'sleep']) await symlink('busybox', join(rootfs, 'bin', applet));
    const spec = JSON.parse((await ctr(d.socket, ['oci', 'spec'])).stdout) as {
      process: Record<string, unknown>;
      root: { path: string };
      linux: { namespaces: { type: string }[]; cgroupsPath?: string };
    };
    spec.process.args = ['sh', '-c', '(sleep 0.2 &); (sleep 0.2 &); (sleep 0.2 &); sleep 600'];
    spec.process.env = ['PATH=/bin'];
    spec.root.path = rootfs;
    spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== 'pid');
    spec.linux.cgroupsPath = `/${ns}/orphans`;
    await writeFile(join(work, 'config.json'), JSON.stringify(spec));
    const r = await run(['run', '-d', '--config', join(work, 'config.json'), 'orphans']);
    expect(r.code, r.stderr).toBe(0);
    const supervisor = Number(await readFile(join(d.dir, 'state', 'tasks', ns, 'orphans', 'shim.pid'), 'utf8'));
    await new Promise((res) => setTimeout(res, 2_500));
    const zombies = [...(await processTable())].filter(([, p]) => p.ppid === supervisor && p.state === 'Z');
    expect(zombies).toEqual([]);
    // The task itself is still supervised: its init is running and its exit is reported.
    expect((await run(['tasks', 'kill', '-s', 'SIGKILL', 'orphans'])).code).toBe(0);
    let status = '';
    for (let i = 0; i < 50 && status !== 'STOPPED'; i++) {
      status = tableRows((await run(['tasks', 'ls'])).stdout).find((row) => row[0] === 'orphans')?.[2] ?? '';
      if (status !== 'STOPPED') await new Promise((res) => setTimeout(res, 100));
    }
    expect(status).toBe('STOPPED');
  });
});
