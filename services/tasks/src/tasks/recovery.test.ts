import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backgroundContext } from '@berth/common/context';
import { nopLogger } from '@berth/common/log';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeNode, fakeContainers, recordingEvents } from '../../test/test-support/fake-node.js';
import { createTaskService, type TaskService } from './service.js';

const io = { stdin: '', stdout: '', stderr: '', terminal: false };
const exitOf = (pid: number, exitStatus: number) => ({ pid, exitStatus, exitedAt: '2024-01-02T03:04:05.000Z' });

describe('recovery of the tasks a previous agent left (fake runc and supervisor)', () => {
  let state: string;
  let node: FakeNode;
  let events: ReturnType<typeof recordingEvents>;
  let tasks: TaskService | undefined;
  const ctx = backgroundContext(nopLogger, 'ns1');
  const dirOf = (id: string): string => join(state, 'tasks', 'ns1', id);

  /** What a previous agent left for task `id`: its record, and optionally its pid and exit files. */
  async function leftBehind(id: string, files: Record<string, string> = {}): Promise<string> {
    const dir = dirOf(id);
    await mkdir(dir, { recursive: true });
    const record = { namespace: 'ns1', id, runtime: 'io.containerd.runc.v2', rootfsMounted: true, io };
    await writeFile(join(dir, 'task.json'), JSON.stringify(record));
    for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
    return dir;
  }

  async function restart(): Promise<TaskService> {
    tasks = createTaskService({
      state,
      containers: fakeContainers({}),
      events,
      log: nopLogger,
      system: node.system,
    });
    await tasks.recover();
    return tasks;
  }

  beforeEach(async () => {
    state = await mkdtemp(join(tmpdir(), 'berth-tasks-recovery-'));
    node = new FakeNode();
    events = recordingEvents();
  });
  afterEach(async () => {
    await tasks?.close();
    tasks = undefined;
    await rm(state, { recursive: true, force: true });
  });

  it('re-adopts a task whose supervisor still runs, with its processes and paused state', async () => {
    const dir = await leftBehind('c1');
    const supervisor = node.newShim();
    supervisor.state = {
      id: 'c1',
      processes: [
        { execId: '', pid: 41, status: 'running', io },
        { execId: 'e1', pid: 42, status: 'stopped', io, exit: exitOf(42, 2) },
      ],
    };
    node.supervisors.set(join(dir, 'shim.sock'), supervisor);
    node.runcStates.set('c1', { id: 'c1', pid: 41, status: 'paused' } as never);
    const t = await restart();

    expect(await t.get(ctx, 'c1', '')).toMatchObject({ pid: 41, status: 'paused' });
    expect(await t.get(ctx, 'c1', 'e1')).toMatchObject({ pid: 42, status: 'stopped', exit: exitOf(42, 2) });
    // The exit the previous agent may have missed is announced, and recorded as announced.
    await t.wait(ctx, 'c1', 'e1');
    await waitFor(() => existsSync(join(dir, 'exec-e1.exit.published')));
    expect(events.topics()).toEqual(['exit']);
    expect(events.seen[0]!.event).toMatchObject({ containerId: 'c1', id: 'e1', pid: 42, exitStatus: 2 });

    // The re-adopted supervisor keeps reporting.
    await t.resume(ctx, 'c1');
    supervisor.exit('', exitOf(41, 0));
    expect(await t.wait(ctx, 'c1', '')).toEqual(exitOf(41, 0));
    expect(await t.delete(ctx, 'c1')).toEqual(exitOf(41, 0));
    expect(supervisor.methods()).toEqual(['state', 'delete', 'shutdown']);
    expect(node.unmounts).toEqual([join(dir, 'rootfs')]);
    expect(existsSync(dir)).toBe(false);
  });

  it('reports the exit a dead supervisor recorded, without announcing it twice', async () => {
    await leftBehind('c1', {
      'init.pid': '51\n',
      'init.exit': JSON.stringify(exitOf(51, 7)),
      'init.exit.published': 'tasks-exit-earlier',
    });
    const t = await restart();
    expect(await t.get(ctx, 'c1', '')).toMatchObject({ pid: 51, status: 'stopped', exit: exitOf(51, 7) });
    expect(await t.delete(ctx, 'c1')).toEqual(exitOf(51, 7));
    expect(events.topics()).toEqual(['delete']);
    // runc runs no more for it: the supervisor saw it exit.
    expect(node.runcCalls.filter((c) => c.startsWith('kill'))).toEqual([]);
  });

  it('reports a task nobody saw exit as killed, and has runc kill what may still run', async () => {
    const dir = await leftBehind('c1', { 'init.pid': '61' });
    const t = await restart();
    const exit = await t.wait(ctx, 'c1', '');
    expect(exit).toMatchObject({ pid: 61, exitStatus: 137 });
    expect(node.runcCalls).toContain(`kill c1 9 all (${join(state, 'runc', 'ns1')})`);
    await waitFor(() => existsSync(join(dir, 'init.exit.published')));
    expect(await readFile(join(dir, 'init.exit.published'), 'utf8')).toMatch(/^tasks-exit-ns1-c1-init-61-/);
    expect(events.topics()).toEqual(['exit']);
  });

  it('removes a bundle whose create never finished, and the spare sockets of the previous agent', async () => {
    const dir = dirOf('half');
    await mkdir(join(dir, 'rootfs'), { recursive: true });
    await writeFile(join(state, 'tasks', 'spare-123.sock'), '');
    const t = await restart();
    expect(existsSync(dir)).toBe(false);
    expect(node.unmounts).toEqual([join(dir, 'rootfs')]);
    expect(existsSync(join(state, 'tasks', 'spare-123.sock'))).toBe(false);
    expect(await t.list(ctx)).toEqual([]);
    expect(node.poolCalls).toEqual(['warm']);
  });

  it('recovers the other tasks when one cannot be read', async () => {
    await leftBehind('good', { 'init.pid': '71', 'init.exit': JSON.stringify(exitOf(71, 0)) });
    await mkdir(join(state, 'tasks', 'ns1', 'not-a-dir-task'), { recursive: true });
    await writeFile(join(dirOf('not-a-dir-task'), 'task.json'), '{not json');
    const t = await restart();
    expect((await t.list(ctx)).map((v) => v.id)).toEqual(['good']);
  });

  it('does not take its own shutdown for a lost supervisor', async () => {
    const dir = await leftBehind('c1');
    const supervisor = node.newShim();
    supervisor.state = { id: 'c1', processes: [{ execId: '', pid: 81, status: 'running', io }] };
    node.supervisors.set(join(dir, 'shim.sock'), supervisor);
    const t = await restart();
    await t.close();
    supervisor.drop();
    await new Promise((r) => setTimeout(r, 20));
    expect(events.topics()).toEqual([]);
    expect(node.runcCalls.filter((c) => c.startsWith('kill'))).toEqual([]);
  });
});

async function waitFor(cond: () => boolean, ms = 2_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
