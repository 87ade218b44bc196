import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backgroundContext, type RequestContext } from '@berth/common/context';
import { ErrorCode, ServiceError } from '@berth/common/errors';
import { nopLogger } from '@berth/common/log';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  FakeNode,
  fakeContainers,
  recordingEvents,
  runnableSpec,
  serviceOptions,
} from '../../test/test-support/fake-node.js';
import { createTaskService, type TaskService } from './service.js';
import type { CreateRequest } from './types.js';

const io = { stdin: '', stdout: '/run/out', stderr: '', terminal: false };
const request = (containerId: string, extra: Partial<CreateRequest> = {}): CreateRequest => ({
  containerId,
  rootfs: [{ type: 'bind', source: '/src', target: '', options: ['rbind'] }],
  io,
  checkpoint: false,
  ...extra,
});
const exitOf = (pid: number, exitStatus: number) => ({ pid, exitStatus, exitedAt: '2024-01-02T03:04:05.000Z' });

async function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (e: unknown) => (e instanceof ServiceError ? e.code : `not a ServiceError: ${String(e)}`),
  );
}

describe('task lifecycle (fake runc and supervisor)', () => {
  let state: string;
  let node: FakeNode;
  let events: ReturnType<typeof recordingEvents>;
  let tasks: TaskService;
  let ctx: RequestContext;

  beforeEach(async () => {
    state = await mkdtemp(join(tmpdir(), 'berth-tasks-unit-'));
    node = new FakeNode();
    events = recordingEvents();
    const containers = fakeContainers({
      c1: { spec: runnableSpec() },
      c2: { spec: runnableSpec() },
      vm: { runtime: 'io.containerd.kata.v2', spec: runnableSpec() },
      nospec: {},
    });
    tasks = createTaskService(serviceOptions(state, node, events, containers));
    ctx = backgroundContext(nopLogger, 'ns1');
  });
  afterEach(async () => {
    await tasks.close();
    await rm(state, { recursive: true, force: true });
  });

  it('creates a bundle, hands it to a supervisor and reports the created task', async () => {
    const { pid } = await tasks.create(ctx, request('c1'));
    const dir = join(state, 'tasks', 'ns1', 'c1');
    const shim = node.spares[0]!;
    expect(shim.methods()).toEqual(['init', 'create']);
    expect(shim.calls[0]).toMatchObject({ method: 'init', dir, id: 'c1', runcRoot: join(state, 'runc', 'ns1') });
    expect(node.mounts).toEqual([join(dir, 'rootfs')]);
    const spec = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'));
    expect(spec.linux.cgroupsPath).toBe('/berth/ns1/c1');
    const record = JSON.parse(await readFile(join(dir, 'task.json'), 'utf8'));
    expect(record).toEqual({ namespace: 'ns1', id: 'c1', runtime: 'io.containerd.runc.v2', rootfsMounted: true, io });
    expect(await tasks.get(ctx, 'c1', '')).toMatchObject({ containerId: 'c1', id: 'c1', pid, status: 'created' });
    expect(events.topics()).toEqual(['create']);
    expect(events.seen[0]!.event).toMatchObject({ containerId: 'c1', bundle: dir, pid });
    expect(node.poolCalls).toEqual(['take', 'replenish']);
  });

  it('refuses a second task for the container, an unknown container and a runtime it does not run', async () => {
    await tasks.create(ctx, request('c1'));
    expect(await codeOf(tasks.create(ctx, request('c1')))).toBe(ErrorCode.AlreadyExists);
    expect(await codeOf(tasks.create(ctx, request('missing')))).toBe(ErrorCode.NotFound);
    expect(await codeOf(tasks.create(ctx, request('vm')))).toBe(ErrorCode.NotImplemented);
    expect(await codeOf(tasks.create(ctx, request('nospec')))).toBe(ErrorCode.InvalidArgument);
    expect(await codeOf(tasks.create(ctx, request('c2', { checkpoint: true })))).toBe(ErrorCode.NotImplemented);
    expect(node.spares).toHaveLength(1);
  });

  it('rolls a failed runc create back: invalid_argument, supervisor shut down, mounts and bundle gone', async () => {
    node.newShim = ((orig) => () => {
      const s = orig();
      s.fail.set('create', new Error('exec: "nope": executable file not found'));
      return s;
    })(node.newShim.bind(node));
    const err = await tasks.create(ctx, request('c1')).catch((e: unknown) => e as ServiceError);
    expect(err).toBeInstanceOf(ServiceError);
    expect((err as ServiceError).code).toBe(ErrorCode.InvalidArgument);
    expect((err as ServiceError).message).toContain('OCI runtime create failed');
    const shim = node.spares[0]!;
    expect(shim.methods()).toEqual(['init', 'create', 'shutdown']);
    expect(shim.closed).toBe(true);
    expect(node.unmounts).toEqual([join(state, 'tasks', 'ns1', 'c1', 'rootfs')]);
    expect(existsSync(join(state, 'tasks', 'ns1', 'c1'))).toBe(false);
    expect(await tasks.list(ctx)).toEqual([]);
    expect(events.topics()).toEqual([]);
  });

  it('rolls a failed rootfs mount back: no supervisor left running, the bundle gone, the id free', async () => {
    node.mountFailure = new Error('mount overlay: EINVAL');
    expect(await codeOf(tasks.create(ctx, request('c1')))).toBe(ErrorCode.Unknown);
    for (const shim of node.spares) {
      expect(shim.methods().at(-1)).toBe('shutdown');
      expect(shim.closed).toBe(true);
    }
    expect(existsSync(join(state, 'tasks', 'ns1', 'c1'))).toBe(false);
    expect(await tasks.list(ctx)).toEqual([]);
    expect(events.topics()).toEqual([]);
    node.mountFailure = undefined;
    await tasks.create(ctx, request('c1'));
  });

  it('leaves nothing behind for a client that went away during create', async () => {
    const gone = new AbortController();
    gone.abort();
    const abandoned = backgroundContext(nopLogger, 'ns1', gone.signal);
    expect(await codeOf(tasks.create(abandoned, request('c1')))).toBe(ErrorCode.Canceled);
    expect(existsSync(join(state, 'tasks', 'ns1', 'c1'))).toBe(false);
    expect(await tasks.list(ctx)).toEqual([]);
    // The id is free again.
    await tasks.create(ctx, request('c1'));
  });

  it('starts, records the exit once, and deletes a stopped task', async () => {
    await tasks.create(ctx, request('c1'));
    const shim = node.spares[0]!;
    const { pid } = await tasks.start(ctx, 'c1', '');
    expect((await tasks.get(ctx, 'c1', '')).status).toBe('running');
    expect(await codeOf(tasks.start(ctx, 'c1', ''))).toBe(ErrorCode.FailedPrecondition);
    expect(await codeOf(tasks.delete(ctx, 'c1'))).toBe(ErrorCode.FailedPrecondition);

    const waited = tasks.wait(ctx, 'c1', '');
    shim.exit('', exitOf(pid, 3));
    shim.exit('', exitOf(pid, 4));
    expect(await waited).toEqual(exitOf(pid, 3));
    expect((await tasks.get(ctx, 'c1', '')).status).toBe('stopped');

    const exit = await tasks.delete(ctx, 'c1');
    expect(exit).toEqual(exitOf(pid, 3));
    expect(shim.methods()).toEqual(['init', 'create', 'start', 'delete', 'shutdown']);
    expect(shim.closed).toBe(true);
    expect(existsSync(join(state, 'tasks', 'ns1'))).toBe(false);
    expect(events.topics()).toEqual(['create', 'start', 'exit', 'delete']);
    expect(events.seen[2]!.event).toMatchObject({ containerId: 'c1', id: 'c1', pid, exitStatus: 3 });
    expect(events.seen[3]!.event).toMatchObject({ containerId: 'c1', pid, exitStatus: 3 });
    const err = await tasks.get(ctx, 'c1', '').catch((e: unknown) => e as ServiceError);
    expect(err.code).toBe(ErrorCode.NotFound);
    expect(err.message).toContain('task c1 not found');
  });

  it('deletes a task that never started: runc kills its waiting init, reported as SIGKILL', async () => {
    await tasks.create(ctx, request('c1'));
    const exit = await tasks.delete(ctx, 'c1');
    expect(exit.exitStatus).toBe(137);
    expect(node.runcCalls).toContain(`delete c1 force (${join(state, 'runc', 'ns1')})`);
    expect(events.topics()).toEqual(['create', 'exit', 'delete']);
  });

  it('runs exec processes beside the init process', async () => {
    await tasks.create(ctx, request('c1'));
    await tasks.start(ctx, 'c1', '');
    const spec = Buffer.from(JSON.stringify({ args: ['sh'] }));
    expect(await codeOf(tasks.exec(ctx, { containerId: 'c1', execId: 'e1', io, spec: Buffer.from('{}') }))).toBe(
      ErrorCode.InvalidArgument,
    );
    await tasks.exec(ctx, { containerId: 'c1', execId: 'e1', io, spec });
    expect(await codeOf(tasks.exec(ctx, { containerId: 'c1', execId: 'e1', io, spec }))).toBe(ErrorCode.AlreadyExists);
    const { pid } = await tasks.start(ctx, 'c1', 'e1');
    expect(await codeOf(tasks.deleteProcess(ctx, 'c1', 'e1'))).toBe(ErrorCode.FailedPrecondition);
    node.spares[0]!.exit('e1', exitOf(pid, 0));
    expect(await tasks.deleteProcess(ctx, 'c1', 'e1')).toEqual({ ...exitOf(pid, 0), id: 'e1' });
    expect(await codeOf(tasks.get(ctx, 'c1', 'e1'))).toBe(ErrorCode.NotFound);
    expect(events.topics()).toEqual(['create', 'start', 'execAdded', 'execStarted', 'exit']);
  });

  it('pauses and resumes through runc', async () => {
    await tasks.create(ctx, request('c1'));
    expect(await codeOf(tasks.pause(ctx, 'c1'))).toBe(ErrorCode.FailedPrecondition);
    await tasks.start(ctx, 'c1', '');
    await tasks.pause(ctx, 'c1');
    expect((await tasks.get(ctx, 'c1', '')).status).toBe('paused');
    await tasks.resume(ctx, 'c1');
    expect((await tasks.get(ctx, 'c1', '')).status).toBe('running');
    expect(events.topics()).toEqual(['create', 'start', 'paused', 'resumed']);
  });

  it('reports a task whose supervisor died as killed, and kills what runc still runs', async () => {
    await tasks.create(ctx, request('c1'));
    const { pid } = await tasks.start(ctx, 'c1', '');
    node.spares[0]!.drop();
    const exit = await tasks.wait(ctx, 'c1', '');
    expect(exit).toMatchObject({ pid, exitStatus: 137 });
    expect(node.runcCalls).toContain(`kill c1 9 all (${join(state, 'runc', 'ns1')})`);
    expect(await codeOf(tasks.kill(ctx, 'c1', '', 15, false))).toBe(ErrorCode.NotFound);
  });

  it('announces an OOM kill before the exit it caused', async () => {
    node.oomKills = 0;
    await tasks.create(ctx, request('c1'));
    const { pid } = await tasks.start(ctx, 'c1', '');
    node.oomKills = 1;
    node.spares[0]!.exit('', exitOf(pid, 137));
    await tasks.delete(ctx, 'c1');
    expect(events.topics()).toEqual(['create', 'start', 'oom', 'exit', 'delete']);
  });

  it("reads a task's cgroup directories from runc's state once: the exit's OOM check and Delete share them", async () => {
    node.oomKills = 0;
    await tasks.create(ctx, request('c1'));
    const { pid } = await tasks.start(ctx, 'c1', '');
    node.spares[0]!.exit('', exitOf(pid, 0));
    await tasks.delete(ctx, 'c1');
    expect(node.cgroupReads).toBe(1);
    expect(events.topics()).toEqual(['create', 'start', 'exit', 'delete']);
  });

  it("reads a running task's cgroup directories once for all its metrics", async () => {
    node.oomKills = 0;
    await tasks.create(ctx, request('c1'));
    await tasks.start(ctx, 'c1', '');
    for (let i = 0; i < 3; i++) expect((await tasks.metrics(ctx, [])).map((m) => m.id)).toEqual(['c1']);
    expect(node.cgroupReads).toBe(1);
  });

  it('keeps namespaces apart', async () => {
    await tasks.create(ctx, request('c1'));
    const other = backgroundContext(nopLogger, 'ns2');
    expect(await tasks.list(other)).toEqual([]);
    expect(await codeOf(tasks.get(other, 'c1', ''))).toBe(ErrorCode.NotFound);
    expect((await tasks.list(ctx)).map((v) => v.id)).toEqual(['c1']);
  });
});
