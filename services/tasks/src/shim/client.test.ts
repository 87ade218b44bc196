import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backgroundContext } from '@berth/common/context';
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
import { createTaskService } from '../tasks/service.js';
import { connectShim } from './client.js';

/** A supervisor that accepts connections and reads requests but never answers (as one that is SIGSTOPped). */
async function silentSupervisor(path: string): Promise<{ server: Server; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('data', (d) => requests.push(d.toString()));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  return {
    server,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

async function failure(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ServiceError) return e;
    throw e;
  }
  throw new Error('the call succeeded');
}

describe('supervisor calls that are never answered', () => {
  let dir: string;
  let sup: Awaited<ReturnType<typeof silentSupervisor>>;
  const timeoutMs = 300;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-shim-client-'));
    sup = await silentSupervisor(join(dir, 'supervisor.sock'));
  });
  afterEach(async () => {
    await sup.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('fail with deadline_exceeded naming the method once the call timeout passes', async () => {
    const shim = await connectShim(join(dir, 'supervisor.sock'), { callTimeoutMs: timeoutMs });
    const started = Date.now();
    const err = await failure(shim.call({ method: 'kill', signal: 9, all: false }));
    const took = Date.now() - started;
    expect(err.code).toBe(ErrorCode.DeadlineExceeded);
    expect(err.message).toMatch(/task supervisor did not answer kill within 0\.300s/);
    expect(took).toBeGreaterThanOrEqual(timeoutMs - 20);
    expect(took).toBeLessThan(timeoutMs + 2_000);
    expect(sup.requests.join('')).toContain('"method":"kill"');
    shim.close();
  });

  it("end at once when the request's signal aborts", async () => {
    const shim = await connectShim(join(dir, 'supervisor.sock'), { callTimeoutMs: 60_000 });
    const ac = new AbortController();
    const call = failure(shim.call({ method: 'delete' }, { signal: ac.signal }));
    setTimeout(() => ac.abort(), 50);
    const started = Date.now();
    const err = await call;
    expect(err.code).toBe(ErrorCode.Canceled);
    expect(err.message).toContain('delete');
    expect(Date.now() - started).toBeLessThan(1_000);
    shim.close();
  });

  it('Tasks.Create on a stopped supervisor fails with deadline_exceeded and rolls back', async () => {
    const node = new FakeNode();
    // The real client on the silent socket, in place of the fake supervisor pool.
    const pool = {
      take: () => connectShim(join(dir, 'supervisor.sock'), { callTimeoutMs: timeoutMs }),
      warm: () => undefined,
      replenish: () => undefined,
      close: async () => undefined,
    };
    const system = { ...node.system, createSparePool: () => pool };
    const state = join(dir, 'state');
    const tasks = createTaskService({
      ...serviceOptions(state, node, recordingEvents(), fakeContainers({ c1: { spec: runnableSpec() } })),
      system,
      supervisorTimeoutMs: timeoutMs,
    });
    try {
      const started = Date.now();
      const err = await failure(
        tasks.create(backgroundContext(nopLogger, 'ns1'), {
          containerId: 'c1',
          rootfs: [],
          io: { stdin: '', stdout: '', stderr: '', terminal: false },
          checkpoint: false,
        }),
      );
      expect(err.code).toBe(ErrorCode.DeadlineExceeded);
      expect(err.message).toContain('init');
      // init, then the rollback's shutdown: each waits one timeout at most.
      expect(Date.now() - started).toBeLessThan(3 * timeoutMs + 2_000);
      expect(existsSync(join(state, 'tasks', 'ns1', 'c1'))).toBe(false);
    } finally {
      await tasks.close();
    }
  });
});
