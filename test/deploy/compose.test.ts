/**
 * docker-compose.yml brought up for real on a Docker engine: every image built locally (no registry here:
 * deploy/images/build-local.sh), the cluster started and found healthy, then driven by the host's real `ctr`
 * on the node's socket: pull from a registry container, `ctr run --rm`; a detached container survives a stop
 * and start of the node container; `docker-compose down -v` leaves nothing behind.
 *
 * Where no engine can start, this fails with the reason in CI (CI=true) and is skipped, saying why, elsewhere.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { busyboxImage, pushImage } from '@berth/testing/images';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ComposeProject, sh } from './src/compose.js';
import { dockerCli, type Engine, repoRoot, startEngine } from './src/engine.js';

const run = promisify(execFile);
const ci = process.env['CI'] === 'true';
const engine: Engine | Error = await startEngine().catch((e: unknown) =>
  e instanceof Error ? e : new Error(String(e)),
);
if (engine instanceof Error && !ci) console.warn(`deploy compose test skipped: ${engine.message}`);

const project = `berthdeploy${process.pid}`;
const ns = 'deploytest';
/** The long-running services and their replica counts; 0 = a one-shot that must exit 0. */
const expected = { postgres: 1, nats: 1, s3: 1, migrate: 0, metadata: 2, content: 2, events: 1, node: 1, gc: 1 };

if (engine instanceof Error && ci)
  describe('docker-compose.yml (no Docker engine)', () => {
    it('needs a Docker engine', () => {
      throw engine;
    });
  });

describe.skipIf(engine instanceof Error)('docker-compose.yml, brought up for real', () => {
  const eng = engine as Engine;
  let p: ComposeProject;
  let dir = '';
  let registry = '';
  let imageRef = '';
  let ctrArgs: string[] = [];
  let volumesBefore: string[] = [];
  const timings: string[] = [];

  /**
   * Runs one step of the setup within its own deadline, and says at once how long it took: when a step hangs,
   * CI's log shows which one, and the step's own error (with the engine's state) comes before the hook's timeout.
   */
  const t00 = Date.now();
  async function step<T>(name: string, deadlineMs: number, work: () => Promise<T>): Promise<T> {
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${name}: not done after ${deadlineMs / 1000} s`)), deadlineMs);
    });
    try {
      const out = await Promise.race([work(), late]);
      const line = `${name}: ${((Date.now() - t0) / 1000).toFixed(1)} s`;
      timings.push(line);
      console.info(`[compose +${((Date.now() - t00) / 1000).toFixed(0)} s] ${line}`);
      return out;
    } catch (e) {
      const why = [(e as Error).message, await p?.diagnose().catch(() => ''), await eng.logTail()];
      throw new Error(why.filter(Boolean).join('\n'));
    } finally {
      clearTimeout(timer);
    }
  }

  beforeAll(async () => {
    if (eng.cleared.length) console.info(`[compose] removed what an earlier run left: ${eng.cleared.join(', ')}`);
    const built = await step('images built', 10 * 60_000, () =>
      sh(join(repoRoot, 'deploy/images/build-local.sh'), [], {
        env: { ...process.env, DOCKER: '/usr/bin/docker', DOCKER_HOST: eng.host },
        timeoutMs: 10 * 60_000,
      }),
    );
    const vars = Object.fromEntries(
      built.stdout
        .split('\n')
        .filter((l) => /^[A-Z0-9_]+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    const size = await sh(dockerCli, ['image', 'inspect', '--format', '{{.Size}}', vars['BERTH_IMAGE'] ?? ''], {
      env: { ...process.env, DOCKER_HOST: eng.host },
    });
    timings.push(`Berth image (every role): ${(Number(size.stdout.trim()) / 1e6).toFixed(0)} MB`);
    for (const v of [
      'BERTH_IMAGE',
      'BERTH_POSTGRES_IMAGE',
      'BERTH_NATS_IMAGE',
      'BERTH_S3_IMAGE',
      'BERTH_REGISTRY_IMAGE',
    ])
      expect(vars[v], `build-local.sh names ${v}`).toBeTruthy();
    // The node's root and state on the host, on a shared mount so its rootfs mounts propagate out.
    dir = await mkdtemp('/tmp/berth-deploy-');
    await sh('mount', ['--bind', dir, dir]);
    await sh('mount', ['--make-rshared', dir]);
    p = new ComposeProject(project, eng.host, {
      ...vars,
      BERTH_NODE_ROOT: join(dir, 'root'),
      BERTH_NODE_STATE: join(dir, 'state'),
    });
    ctrArgs = ['--address', join(dir, 'state/berth.sock'), '--namespace', ns];

    // A registry container, published on a loopback port for the host's ctr (ctr pulls client-side).
    await step('registry container up, busybox pushed', 3 * 60_000, async () => {
      await p.docker(['network', 'create', `${project}-registry`]);
      await p.docker([
        'run',
        '-d',
        '--name',
        `${project}-registry`,
        '--network',
        `${project}-registry`,
        '-p',
        '127.0.0.1::5000',
        vars['BERTH_REGISTRY_IMAGE'] ?? 'registry:2',
      ]);
      registry = (await p.docker(['port', `${project}-registry`, '5000/tcp'])).stdout.trim().split('\n')[0] ?? '';
      for (let i = 0; ; i++) {
        const ok = await fetch(`http://${registry}/v2/`, { signal: AbortSignal.timeout(2_000) }).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) break;
        if (i > 100) throw new Error(`registry container at ${registry} does not answer`);
        await new Promise((r) => setTimeout(r, 200));
      }
      imageRef = await pushImage({ host: registry }, 'library/busybox', 'deploy', await busyboxImage());
    });

    volumesBefore = await p.volumes();
    const t0 = Date.now();
    // docker-compose 1.29's `up -d` itself waits for each depends_on condition before starting a dependent.
    await step('up -d', 5 * 60_000, () => p.compose(['up', '-d'], 5 * 60_000));
    const healthy = await step('all healthy after up -d', 4 * 60_000, () => p.waitHealthy(expected, 4 * 60_000));
    timings.push(
      `up -d to all healthy: ${((Date.now() - t0) / 1000).toFixed(1)} s (health polled ${healthy.toFixed(1)} s)`,
    );
  }, 25 * 60_000);

  afterAll(async () => {
    if (!p) return;
    console.info(`deploy compose figures (a shared 2-core machine: noisy):\n  ${timings.join('\n  ')}`);
    await ctr(['tasks', 'kill', '-s', 'SIGKILL', 'sleeper']).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 500));
    await ctr(['tasks', 'delete', 'sleeper']).catch(() => undefined);
    await ctr(['containers', 'delete', 'sleeper']).catch(() => undefined);
    await p.compose(['down', '-v', '--timeout', '10']).catch((e: Error) => console.error(e.message));
    await p.docker(['rm', '-f', '-v', `${project}-registry`]).catch(() => undefined);
    await p.docker(['network', 'rm', `${project}-registry`]).catch(() => undefined);
    if (dir) {
      await sh('umount', ['-R', dir]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    }
    // Idle spare task supervisors the node started outlive it (they are in its cgroup, by design of
    // BERTH_CGROUP); nothing else is left to serve, so end them, then remove the cgroups.
    await killCgroup('berth-node');
    await removeCgroup('berth-node');
    await removeCgroup(ns);
    await eng.stop();
  }, 120_000);

  const ctr = (args: readonly string[], timeoutMs = 120_000) => sh('ctr', [...ctrArgs, ...args], { timeoutMs });

  it('starts every service healthy, two replicas of metadata and content, after the migrations ran', async () => {
    const states = await p.containers();
    const count = (service: string) =>
      states.filter((s) => s.service === service && s.status === 'running' && s.health === 'healthy').length;
    expect({
      metadata: count('metadata'),
      content: count('content'),
      events: count('events'),
      node: count('node'),
      gc: count('gc'),
    }).toEqual({ metadata: 2, content: 2, events: 1, node: 1, gc: 1 });
    const migrate = states.filter((s) => s.service === 'migrate');
    expect(migrate.map((s) => [s.status, s.exitCode])).toEqual([['exited', 0]]);
    expect(await p.logs(migrate[0]?.id ?? '')).toMatch(/"migrated"/);

    // Resident memory of each service at idle (VmRSS of its main process on the host).
    const rss = await Promise.all(
      states
        .filter((s) => s.status === 'running')
        .map(async (s) => {
          const status = await readFile(`/proc/${s.pid}/status`, 'utf8');
          return `${s.name}: ${((Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]) || 0) / 1024).toFixed(0)} MiB`;
        }),
    );
    timings.push(`resident memory at idle: ${rss.sort().join(', ')}`);
  });

  it("lets the host's ctr pull from a registry container through the node, and run the image", async () => {
    const t0 = Date.now();
    await ctr(['images', 'pull', '--plain-http', imageRef]);
    timings.push(`ctr pull: ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    expect((await ctr(['images', 'ls', '-q'])).stdout.split('\n')).toContain(imageRef);
    const out = await ctr(['run', '--rm', imageRef, 'hello', 'echo', 'hello from the compose node']);
    expect(out.stdout.trim()).toBe('hello from the compose node');
    expect((await ctr(['containers', 'ls', '-q'])).stdout.trim()).toBe('');
  });

  it('keeps a detached container running across a stop and a start of the node container', async () => {
    await ctr(['run', '-d', imageRef, 'sleeper', 'sleep', '3600']);
    const before = await runningTask('sleeper');
    expect(before).toBeDefined();

    await p.compose(['stop', 'node']);
    try {
      const stopped = (await p.containers()).filter((s) => s.service === 'node');
      expect(stopped.map((s) => s.status)).toEqual(['exited']);
      // The container's process outlives the agent.
      expect(isAlive(before?.pid ?? 0)).toBe(true);
    } finally {
      await p.compose(['start', 'node']);
      await p.waitHealthy({ node: 1 }, 120_000);
    }
    const after = await runningTask('sleeper');
    expect(after).toEqual(before);
    // And the restarted node still drives it: exec in it, then stop it.
    const exec = await ctr(['tasks', 'exec', '--exec-id', 'probe', 'sleeper', 'echo', 'still here']);
    expect(exec.stdout.trim()).toBe('still here');
    await ctr(['tasks', 'kill', '-s', 'SIGKILL', 'sleeper']);
    for (let i = 0; i < 50 && (await runningTask('sleeper')); i++) await new Promise((r) => setTimeout(r, 200));
    expect(isAlive(before?.pid ?? 0)).toBe(false);
    await ctr(['tasks', 'delete', 'sleeper']);
    await ctr(['containers', 'delete', 'sleeper']);
  });

  it("the gc service collects: ctr images rm --sync returns once the image's content and snapshots are gone", async () => {
    const t0 = Date.now();
    const rm = await ctr(['images', 'rm', '--sync', imageRef]).then(
      () => undefined,
      (e: Error) => e,
    );
    if (rm) {
      const gc = (await p.containers()).filter((s) => s.service === 'gc');
      throw new Error(`${rm.message}\ngc log:\n${(await Promise.all(gc.map((s) => p.logs(s.id)))).join('\n')}`);
    }
    timings.push(`images rm --sync: ${Date.now() - t0} ms`);
    // No waiting: the collector in its own container answered once the node freed its snapshot directories.
    expect((await ctr(['images', 'ls', '-q'])).stdout.trim()).toBe('');
    expect((await ctr(['content', 'ls', '-q'])).stdout.trim()).toBe('');
    expect((await ctr(['snapshots', 'ls'])).stdout.trim().split('\n')).toHaveLength(1);
    expect(await readdir(join(dir, 'root', 'snapshots', 'overlayfs'))).toEqual([]);
  });

  it('docker-compose down -v leaves no container, network, volume or mount behind', async () => {
    await p.compose(['down', '-v', '--timeout', '10']);
    expect(await p.leftovers()).toEqual([]);
    expect(await p.volumes(), 'anonymous volumes too').toEqual(volumesBefore);
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8')).split('\n').filter((l) => l.includes(`${dir}/`));
    expect(mounts).toEqual([]);
    const runc = await run('runc', ['--root', join(dir, 'state/runc', ns), 'list', '-q']).then(
      (r) => r.stdout.trim(),
      () => '',
    );
    expect(runc).toBe('');
  });

  async function runningTask(id: string): Promise<{ pid: number; status: string } | undefined> {
    const lines = (await ctr(['tasks', 'ls'])).stdout.split('\n').slice(1);
    for (const l of lines) {
      const [task, pid, status] = l.trim().split(/\s+/);
      if (task === id && status === 'RUNNING') return { pid: Number(pid), status };
    }
    return undefined;
  }
});

function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** SIGKILLs every process left in a cgroup of the host (v1 pids hierarchy, or v2), and waits until it is empty. */
async function killCgroup(name: string): Promise<void> {
  const procsFile = ['/sys/fs/cgroup/pids', '/sys/fs/cgroup'].map((h) => join(h, name, 'cgroup.procs'));
  for (let i = 0; i < 50; i++) {
    const pids = (await Promise.all(procsFile.map((f) => readFile(f, 'utf8').catch(() => '')))).flatMap((text) =>
      text.split('\n').filter(Boolean).map(Number),
    );
    if (pids.length === 0) return;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Removes an (empty) cgroup of the host, in every hierarchy. */
async function removeCgroup(name: string): Promise<void> {
  const top = '/sys/fs/cgroup';
  const dirs = (await readdir(top).catch(() => [] as string[])).map((h) => join(top, h, name));
  await Promise.all([join(top, name), ...dirs].map((d) => rmdir(d).catch(() => undefined)));
}
