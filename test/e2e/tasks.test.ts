import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readdir, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EventsReplayClient, type SequencedEnvelope } from '@berth/proto/berth/internal/v1/events';
import { TaskExit, TaskOOM } from '@berth/proto/containerd/events/task';
import { ContainersClient } from '@berth/proto/containerd/services/containers/v1/containers';
import { TasksClient } from '@berth/proto/containerd/services/tasks/v1/tasks';
import { busyboxImage, pushImage } from '@berth/testing/images';
import { type TestNats, useNats } from '@berth/testing/nats';
import { freePort } from '@berth/testing/ports';
import { type Registry, startRegistry } from '@berth/testing/registry';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr, tableRows } from './src/ctr.js';

/**
 * The tasks agent end to end: containers made through metadata's Containers API (spec with an absolute
 * root path, a busybox-static rootfs, no snapshot), driven by the real ctr (`tasks start/exec/ps/…`) and by
 * our gRPC client where ctr offers no way in (rootfs mounts, bad specs, agent restarts).
 */

const specUrl = 'types.containerd.io/opencontainers/runtime-spec/1/Spec';
const defaultCaps = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** containerd's default Linux spec (oci.populateDefaultUnixSpec) for `args`, rooted at `root`. */
function spec(ns: string, id: string, args: string[], root: string): Record<string, unknown> {
  return {
    ociVersion: '1.0.2-dev',
    process: {
      user: { uid: 0, gid: 0 },
      args,
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      cwd: '/',
      capabilities: { bounding: defaultCaps, effective: defaultCaps, permitted: defaultCaps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: root },
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
      },
      {
        destination: '/dev/shm',
        type: 'tmpfs',
        source: 'shm',
        options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
      },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux: {
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      cgroupsPath: `/${ns}/${id}`,
      namespaces: [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network' }],
      maskedPaths: ['/proc/kcore', '/proc/keys', '/proc/timer_list', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/** A busybox-static root filesystem: /bin/busybox and its applet links. */
async function makeRootfs(dir: string): Promise<void> {
  for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'etc']) await mkdir(join(dir, d), { recursive: true });
  await copyFile('/bin/busybox', join(dir, 'bin/busybox'));
  // Relative links: they must resolve inside the container, where the rootfs is `/`.
  for (const applet of execFileSync('/bin/busybox', ['--list'], { encoding: 'utf8' }).split('\n')) {
    if (applet !== '' && applet !== 'busybox') await symlink('busybox', join(dir, 'bin', applet));
  }
}

function unary<Res>(
  fn: (md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: Res) => void) => unknown,
  ns: string,
): Promise<Res> {
  const md = new grpc.Metadata();
  md.set('containerd-namespace', ns);
  return new Promise((resolve, reject) => fn(md, (e, r) => (e ? reject(e) : resolve(r as Res))));
}

describe('tasks agent', () => {
  let d: BerthdProcess;
  let dir: string;
  let rootfs: string;
  let containers: ContainersClient;
  let tasksClient: TasksClient;
  let replay: EventsReplayClient;
  let nats: TestNats;
  let httpAddress: string;
  // A bus that outlives berthd (JetStream), so exits announced before a restart are still there to count.
  const ns = `tasks-e2e-${Date.now().toString(36)}`;
  const since = new Date();

  const createContainer = async (
    id: string,
    args: string[],
    root = rootfs,
    namespace = ns,
    tweak: (s: Record<string, unknown>) => void = () => undefined,
  ): Promise<void> => {
    const s = spec(namespace, id, args, root);
    tweak(s);
    await unary(
      (md, cb) =>
        containers.create(
          {
            container: {
              id,
              labels: {},
              image: '',
              runtime: { name: 'io.containerd.runc.v2', options: undefined },
              spec: { typeUrl: specUrl, value: Buffer.from(JSON.stringify(s)) },
              snapshotter: '',
              snapshotKey: '',
              extensions: {},
            },
          },
          md,
          cb,
        ),
      namespace,
    );
  };

  const connect = (socket: string): void => {
    const target = `unix://${socket}`;
    containers = new ContainersClient(target, grpc.credentials.createInsecure());
    tasksClient = new TasksClient(target, grpc.credentials.createInsecure());
    replay = new EventsReplayClient(target, grpc.credentials.createInsecure());
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-tasks-e2e-'));
    rootfs = join(dir, 'rootfs');
    await makeRootfs(rootfs);
    nats = await useNats();
    httpAddress = `127.0.0.1:${await freePort()}`;
    d = await startBerthd({ dir: join(dir, 'berthd'), args: ['--nats', nats.url, '--http', httpAddress] });
    connect(d.socket);
  });
  afterAll(async () => {
    containers?.close();
    tasksClient?.close();
    replay?.close();
    await d?.stop();
    await nats?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const run = (args: string[], input?: string) =>
    ctr(d.socket, args, { namespace: ns, ...(input !== undefined ? { input } : {}) });

  describe('ctr run with a pulled image', () => {
    let registry: Registry;
    let ref: string;
    beforeAll(async () => {
      registry = await startRegistry();
      ref = await pushImage(registry, 'test/busybox', 'latest', await busyboxImage());
      const pull = await run(['images', 'pull', '--plain-http', ref]);
      expect(pull.code, pull.stderr).toBe(0);
    });
    afterAll(async () => {
      await registry?.stop();
    });

    it('ctr run --rm prints the output and exits with the container status', async () => {
      const hello = await run(['run', '--rm', ref, 'run-hello', 'echo', 'hello']);
      expect(hello.stderr).toBe('');
      expect(hello.stdout).toBe('hello\n');
      expect(hello.code).toBe(0);
      const three = await run(['run', '--rm', ref, 'run-three', 'sh', '-c', 'exit 3']);
      expect(three.code).toBe(3);
      expect(tableRows((await run(['containers', 'ls'])).stdout).map((r) => r[0])).not.toContain('run-hello');
      await expectNothingLeft('run-hello');
      await expectNothingLeft('run-three');
    });

    it('ctr run -d, then tasks ls, ps, exec, pause/resume, metrics, kill, rm and containers rm', async () => {
      expect((await run(['run', '-d', ref, 'run-d', 'sleep', '600'])).code).toBe(0);
      const row = tableRows((await run(['tasks', 'ls'])).stdout).find((r) => r[0] === 'run-d');
      expect(row?.[2]).toBe('RUNNING');
      expect(tableRows((await run(['tasks', 'ps', 'run-d'])).stdout)).toContainEqual([row?.[1], '-']);
      const exec = await run(['tasks', 'exec', '--exec-id', 'x', 'run-d', 'cat', '/etc/passwd']);
      expect(exec.code).toBe(0);
      expect(exec.stdout).toContain('root:x:0:0');
      expect((await run(['tasks', 'pause', 'run-d'])).code).toBe(0);
      expect(tableRows((await run(['tasks', 'ls'])).stdout)).toContainEqual(['run-d', row?.[1], 'PAUSED']);
      expect((await run(['tasks', 'resume', 'run-d'])).code).toBe(0);
      expect((await run(['tasks', 'metrics', 'run-d'])).stdout).toMatch(/pids\.current\s+1\b/);
      expect((await run(['tasks', 'kill', '-s', 'SIGKILL', 'run-d'])).code).toBe(0);
      await waitFor(async () =>
        tableRows((await run(['tasks', 'ls'])).stdout).some((r) => r[0] === 'run-d' && r[2] === 'STOPPED'),
      );
      expect((await run(['tasks', 'rm', 'run-d'])).code).toBe(0);
      const rmc = await run(['containers', 'rm', 'run-d']);
      expect(rmc.code, rmc.stderr).toBe(0);
      await expectNothingLeft('run-d');
    });

    it('ctr run -t gives the task a terminal', async () => {
      // ctr needs a terminal of its own for -t: `script` provides one.
      const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const cmd = `ctr --address ${d.socket} --namespace ${ns} run -t --rm ${ref} run-tty sh -c 'tty; exit 2'`;
        const child = spawn('script', ['-qec', cmd, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (b: Buffer) => (out += b.toString()));
        child.stderr.on('data', (b: Buffer) => (out += b.toString()));
        child.once('close', (code) => resolve({ code, out }));
        child.stdin.end();
      });
      expect(r.out).toMatch(/\/dev\/pts\/0/);
      expect(r.out).not.toMatch(/ERRO/);
      expect(r.code).toBe(2);
      await expectNothingLeft('run-tty');
    });
  });

  it('ctr tasks start prints the output and exits with the task status', async () => {
    await createContainer('hello', ['echo', 'hello']);
    const r = await run(['tasks', 'start', 'hello']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('hello\n');
    expect(r.code).toBe(0);
    // ctr deleted the task once it had the exit status.
    expect(tableRows((await run(['tasks', 'ls'])).stdout).find((r) => r[0] === 'hello')).toBeUndefined();
    await expectNothingLeft('hello');
    expect((await run(['containers', 'rm', 'hello'])).code).toBe(0);

    await createContainer('three', ['sh', '-c', 'echo out; echo err >&2; exit 3']);
    const three = await run(['tasks', 'start', 'three']);
    expect(three.code).toBe(3);
    expect(three.stdout).toBe('out\n');
    expect(three.stderr).toBe('err\n');
    expect((await run(['containers', 'rm', 'three'])).code).toBe(0);
  });

  it('stdin reaches the task', async () => {
    await createContainer('cat', ['cat']);
    const r = await run(['tasks', 'start', 'cat'], 'piped through\n');
    expect(r.stdout).toBe('piped through\n');
    expect(r.code).toBe(0);
    expect((await run(['containers', 'rm', 'cat'])).code).toBe(0);
  });

  it('detached task: ls, ps, exec, pause/resume, metrics, kill, rm, containers rm', async () => {
    await createContainer('sleeper', ['sleep', '600']);
    const start = await run(['tasks', 'start', '-d', 'sleeper']);
    expect(start.code, start.stderr).toBe(0);

    const ls = await run(['tasks', 'ls']);
    const row = tableRows(ls.stdout).find((r) => r[0] === 'sleeper');
    expect(row?.[2]).toBe('RUNNING');
    const pid = row?.[1] ?? '';

    const ps = await run(['tasks', 'ps', 'sleeper']);
    expect(ps.code, ps.stderr).toBe(0);
    expect(tableRows(ps.stdout)).toContainEqual([pid, '-']);

    const exec = await run(['tasks', 'exec', '--exec-id', 'x', 'sleeper', 'sh', '-c', 'echo from-exec; exit 5']);
    expect(exec.stdout).toBe('from-exec\n');
    expect(exec.code).toBe(5);

    expect((await run(['tasks', 'pause', 'sleeper'])).code).toBe(0);
    expect(tableRows((await run(['tasks', 'ls'])).stdout)).toContainEqual(['sleeper', pid, 'PAUSED']);
    expect((await run(['tasks', 'resume', 'sleeper'])).code).toBe(0);
    expect(tableRows((await run(['tasks', 'ls'])).stdout)).toContainEqual(['sleeper', pid, 'RUNNING']);

    const metrics = await run(['tasks', 'metrics', 'sleeper']);
    expect(metrics.code, metrics.stderr).toBe(0);
    expect(metrics.stdout).toMatch(/ID\s+TIMESTAMP\s*\nsleeper\s+/);
    expect(metrics.stdout).toMatch(/memory\.usage_in_bytes\s+\d+/);
    expect(metrics.stdout).toMatch(/pids\.current\s+1/);

    // The ops server's /metrics has the container's cgroup figures, labelled by id and namespace.
    const prom = await (await fetch(`http://${httpAddress}/metrics`)).text();
    expect(prom).toMatch(
      new RegExp(`container_pids_current\\{[^}]*container_id="sleeper",namespace="${ns}"[^}]*\\} 1\\b`),
    );
    expect(prom).toMatch(/container_memory_usage_bytes\{[^}]*container_id="sleeper"[^}]*\} [1-9]\d*/);

    const kill = await run(['tasks', 'kill', '-s', 'SIGKILL', 'sleeper']);
    expect(kill.code, kill.stderr).toBe(0);
    await waitFor(async () =>
      tableRows((await run(['tasks', 'ls'])).stdout).some((r) => r[0] === 'sleeper' && r[2] === 'STOPPED'),
    );
    const again = await run(['tasks', 'kill', 'sleeper']);
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('process already finished: not found');

    expect((await run(['tasks', 'rm', 'sleeper'])).code).toBe(0);
    expect((await run(['containers', 'rm', 'sleeper'])).code).toBe(0);
    expect(tableRows((await run(['tasks', 'ls'])).stdout).find((r) => r[0] === 'sleeper')).toBeUndefined();
    await expectNothingLeft('sleeper');
  });

  it('creates with rootfs mounts (bind) and removes them on delete', async () => {
    await createContainer('mounted', ['cat', '/marker'], 'rootfs');
    await mkdir(join(dir, 'rootfs2'), { recursive: true });
    await makeRootfs(join(dir, 'rootfs2'));
    execFileSync('sh', ['-c', `echo bound > ${join(dir, 'rootfs2', 'marker')}`]);
    const fifoDir = await mkdtemp(join(tmpdir(), 'berth-fifo-'));
    const out = join(fifoDir, 'out');
    execFileSync('mkfifo', [out]);
    const created = await unary<{ pid: number }>(
      (md, cb) =>
        tasksClient.create(
          {
            containerId: 'mounted',
            rootfs: [{ type: 'bind', source: join(dir, 'rootfs2'), target: '', options: ['rbind', 'rw'] }],
            stdin: '',
            stdout: out,
            stderr: '',
            terminal: false,
            runtimePath: '',
          },
          md,
          cb,
        ),
      ns,
    );
    expect(created.pid).toBeGreaterThan(0);
    const bundleRootfs = join(d.dir, 'state', 'tasks', ns, 'mounted', 'rootfs');
    expect(await readFile('/proc/self/mountinfo', 'utf8')).toContain(bundleRootfs);
    // Open before Start, as ctr opens its FIFOs before Create: a reader that opened only after the process exited
    // and its supervisor closed the FIFO would find no writer, and wait for one forever.
    const outReader = await open(out, 'r');
    const reading = outReader.readFile('utf8').finally(() => outReader.close());
    const waited = unary<{ exitStatus: number }>(
      (md, cb) => tasksClient.wait({ containerId: 'mounted', execId: '' }, md, cb),
      ns,
    );
    await unary((md, cb) => tasksClient.start({ containerId: 'mounted', execId: '' }, md, cb), ns);
    expect((await waited).exitStatus).toBe(0);
    expect(await reading).toBe('bound\n');
    await unary((md, cb) => tasksClient.delete({ containerId: 'mounted' }, md, cb), ns);
    expect(await readFile('/proc/self/mountinfo', 'utf8')).not.toContain(bundleRootfs);
    await expectNothingLeft('mounted');
    await rm(fifoDir, { recursive: true, force: true });
    expect((await run(['containers', 'rm', 'mounted'])).code).toBe(0);
  });

  it('bad input: right codes, clear messages, nothing left behind', async () => {
    const grpcCode = async (p: Promise<unknown>): Promise<[number, string]> => {
      try {
        await p;
        return [0, ''];
      } catch (e) {
        const err = e as grpc.ServiceError;
        return [err.code, err.details];
      }
    };
    // Unknown container.
    let [code, msg] = await grpcCode(
      unary(
        (md, cb) =>
          tasksClient.create(
            { containerId: 'nope', rootfs: [], stdin: '', stdout: '', stderr: '', terminal: false, runtimePath: '' },
            md,
            cb,
          ),
        ns,
      ),
    );
    expect(code).toBe(grpc.status.NOT_FOUND);
    expect(msg).toContain(`container "nope" in namespace "${ns}": not found`);
    // A container without a task.
    await createContainer('idle', ['true']);
    [code, msg] = await grpcCode(unary((md, cb) => tasksClient.get({ containerId: 'idle', execId: '' }, md, cb), ns));
    expect(code).toBe(grpc.status.NOT_FOUND);
    expect(msg).toBe('task idle not found');
    const killNone = await run(['tasks', 'kill', 'idle']);
    expect(killNone.code).not.toBe(0);

    // Double start.
    await createContainer('twice', ['sleep', '600']);
    expect((await run(['tasks', 'start', '-d', 'twice'])).code).toBe(0);
    [code, msg] = await grpcCode(
      unary((md, cb) => tasksClient.start({ containerId: 'twice', execId: '' }, md, cb), ns),
    );
    expect(code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(msg).toContain('cannot start a running process');
    // Double create.
    [code, msg] = await grpcCode(
      unary(
        (md, cb) =>
          tasksClient.create(
            { containerId: 'twice', rootfs: [], stdin: '', stdout: '', stderr: '', terminal: false, runtimePath: '' },
            md,
            cb,
          ),
        ns,
      ),
    );
    expect(code).toBe(grpc.status.ALREADY_EXISTS);
    expect(msg).toBe('task twice: already exists');
    // Delete while running.
    [code] = await grpcCode(unary((md, cb) => tasksClient.delete({ containerId: 'twice' }, md, cb), ns));
    expect(code).toBe(grpc.status.FAILED_PRECONDITION);
    expect((await run(['tasks', 'kill', '-s', 'SIGKILL', 'twice'])).code).toBe(0);
    await waitFor(async () =>
      tableRows((await run(['tasks', 'ls'])).stdout).some((r) => r[0] === 'twice' && r[2] === 'STOPPED'),
    );
    [code, msg] = await grpcCode(
      unary((md, cb) => tasksClient.kill({ containerId: 'twice', execId: '', signal: 15, all: false }, md, cb), ns),
    );
    expect(code).toBe(grpc.status.NOT_FOUND);
    expect(msg).toBe('process already finished: not found');
    expect((await run(['tasks', 'rm', 'twice'])).code).toBe(0);
    await expectNothingLeft('twice');

    // A spec runc rejects: an executable that does not exist.
    await createContainer('badexec', ['/no/such/binary']);
    const bad = await run(['tasks', 'start', 'badexec']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/OCI runtime create failed: .*no such file or directory/);
    [code] = await grpcCode(
      unary(
        (md, cb) =>
          tasksClient.create(
            { containerId: 'badexec', rootfs: [], stdin: '', stdout: '', stderr: '', terminal: false, runtimePath: '' },
            md,
            cb,
          ),
        ns,
      ),
    );
    expect(code).toBe(grpc.status.INVALID_ARGUMENT);
    await expectNothingLeft('badexec');
    // A spec runc rejects outright: a relative mount destination is refused.
    await unary(
      (md, cb) =>
        containers.create(
          {
            container: {
              id: 'badspec',
              labels: {},
              image: '',
              runtime: { name: 'io.containerd.runc.v2', options: undefined },
              spec: {
                typeUrl: specUrl,
                value: Buffer.from(
                  JSON.stringify({
                    ...spec(ns, 'badspec', ['true'], rootfs),
                    mounts: [{ destination: 'relative', type: 'tmpfs', source: 'tmpfs' }],
                  }),
                ),
              },
              snapshotter: '',
              snapshotKey: '',
              extensions: {},
            },
          },
          md,
          cb,
        ),
      ns,
    );
    [code, msg] = await grpcCode(
      unary(
        (md, cb) =>
          tasksClient.create(
            { containerId: 'badspec', rootfs: [], stdin: '', stdout: '', stderr: '', terminal: false, runtimePath: '' },
            md,
            cb,
          ),
        ns,
      ),
    );
    expect(code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(msg).toContain('OCI runtime create failed');
    await expectNothingLeft('badspec');
    for (const id of ['idle', 'twice', 'badexec', 'badspec'])
      expect((await run(['containers', 'rm', id])).code).toBe(0);
  });

  it('publishes the task lifecycle, an OOM kill included', async () => {
    await createContainer(
      'hog',
      ['sh', '-c', 'x=$(head -c 67108864 /dev/zero | tr "\\0" a); echo done'],
      rootfs,
      ns,
      (s) => {
        ((s.linux as Record<string, unknown>).resources as Record<string, unknown>).memory = {
          limit: 16 * 1024 * 1024,
          swap: 16 * 1024 * 1024,
        };
      },
    );
    const r = await run(['tasks', 'start', 'hog']);
    expect(r.code).toBe(137);
    await waitFor(async () => (await replayTopic('/tasks/oom', 300)).length > 0, 15_000);
    const topics = (await replayTopic('/tasks/', 300))
      .map((e) => e.envelope)
      // Field 1 is container_id in every task event: read it through the smallest of them.
      .filter((e) => e?.event !== undefined && TaskOOM.decode(e.event.value).containerId === 'hog')
      .map((e) => e?.topic);
    expect(topics).toEqual(['/tasks/create', '/tasks/start', '/tasks/oom', '/tasks/exit', '/tasks/delete']);
    expect((await run(['containers', 'rm', 'hog'])).code).toBe(0);
  });

  it('tasks keep running when the agent shuts down cleanly (SIGTERM), as on a restart of its unit or container', async () => {
    await createContainer('calm', ['sleep', '600']);
    expect((await run(['tasks', 'start', '-d', 'calm'])).code).toBe(0);
    const pid = tableRows((await run(['tasks', 'ls'])).stdout).find((r) => r[0] === 'calm')?.[1] ?? '';
    expect(pid).toMatch(/^\d+$/);

    containers.close();
    tasksClient.close();
    replay.close();
    const exited = new Promise<number | null>((r) => d.child.once('exit', (code) => r(code)));
    d.child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(existsSync(`/proc/${pid}`)).toBe(true);
    d = await startBerthd({ dir: d.dir, args: ['--nats', nats.url] });
    connect(d.socket);

    expect(tableRows((await run(['tasks', 'ls'])).stdout)).toContainEqual(['calm', pid, 'RUNNING']);
    expect((await run(['tasks', 'kill', '-s', 'SIGKILL', 'calm'])).code).toBe(0);
    await waitFor(async () =>
      tableRows((await run(['tasks', 'ls'])).stdout).some((r) => r[0] === 'calm' && r[2] === 'STOPPED'),
    );
    expect((await run(['tasks', 'rm', 'calm'])).code).toBe(0);
    expect((await run(['containers', 'rm', 'calm'])).code).toBe(0);
  });

  it('tasks keep running when the agent is killed; a new agent re-adopts them and reports each exit once', async () => {
    await createContainer('early', ['sh', '-c', 'exit 4']);
    await createContainer('survivor', ['sleep', '600']);
    await createContainer('quitter', ['sh', '-c', 'sleep 2; exit 7']);
    expect((await run(['tasks', 'start', '-d', 'early'])).code).toBe(0);
    expect((await run(['tasks', 'start', '-d', 'survivor'])).code).toBe(0);
    expect((await run(['tasks', 'start', '-d', 'quitter'])).code).toBe(0);
    const pidOf = async (id: string): Promise<string> =>
      tableRows((await run(['tasks', 'ls'])).stdout).find((r) => r[0] === id)?.[1] ?? '';
    // The early one exits (and is announced) before the agent dies.
    await waitFor(async () =>
      tableRows((await run(['tasks', 'ls'])).stdout).some((r) => r[0] === 'early' && r[2] === 'STOPPED'),
    );
    const survivorPid = await pidOf('survivor');

    d.child.kill('SIGKILL');
    await new Promise((r) => d.child.once('exit', r));
    // With no agent, the containers keep running; the quitter exits meanwhile.
    expect(existsSync(`/proc/${survivorPid}`)).toBe(true);
    await new Promise((r) => setTimeout(r, 2_500));

    containers.close();
    tasksClient.close();
    replay.close();
    d = await startBerthd({ dir: d.dir, args: ['--nats', nats.url] });
    connect(d.socket);

    const rows = tableRows((await run(['tasks', 'ls'])).stdout);
    expect(rows).toContainEqual(['survivor', survivorPid, 'RUNNING']);
    expect(rows).toContainEqual(['quitter', expect.stringMatching(/^\d+$/), 'STOPPED']);
    expect(rows).toContainEqual(['early', expect.stringMatching(/^\d+$/), 'STOPPED']);
    const q = await unary<{ process?: { exitStatus: number } }>(
      (md, cb) => tasksClient.get({ containerId: 'quitter', execId: '' }, md, cb),
      ns,
    );
    expect(q.process?.exitStatus).toBe(7);

    // The re-adopted task still answers: exec, then kill; its exit reaches a waiter.
    const exec = await run(['tasks', 'exec', '--exec-id', 'after', 'survivor', 'echo', 'still here']);
    expect(exec.stdout).toBe('still here\n');
    const waited = unary<{ exitStatus: number }>(
      (md, cb) => tasksClient.wait({ containerId: 'survivor', execId: '' }, md, cb),
      ns,
    );
    // `sleep` as its namespace's init ignores SIGTERM, as on containerd: SIGKILL it.
    expect((await run(['tasks', 'kill', '-s', 'SIGKILL', 'survivor'])).code).toBe(0);
    expect((await waited).exitStatus).toBe(128 + 9);

    for (const id of ['early', 'survivor', 'quitter']) {
      expect((await run(['tasks', 'rm', id])).code).toBe(0);
      expect((await run(['containers', 'rm', id])).code).toBe(0);
      await expectNothingLeft(id);
    }
    // Everything the bus kept since the test began: each init exit exactly once, across both agents.
    const exits = (await replayTopic('/tasks/exit')).map((e) =>
      TaskExit.decode(e.envelope?.event?.value ?? Buffer.alloc(0)),
    );
    const statuses = (id: string): number[] => exits.filter((e) => e.id === id).map((e) => e.exitStatus);
    expect(statuses('early')).toEqual([4]);
    expect(statuses('quitter')).toEqual([7]);
    expect(statuses('survivor')).toEqual([137]);
  }, 120_000);

  /** Every retained event of this test's namespace on `topic` since the test began (berth's replay API). */
  const replayTopic = (topic: string, waitMs = 1_500): Promise<SequencedEnvelope[]> =>
    new Promise((resolve, reject) => {
      const got: SequencedEnvelope[] = [];
      const md = new grpc.Metadata();
      md.set('containerd-namespace', ns);
      const filter = topic.endsWith('/') ? `topic~="^${topic}"` : `topic=="${topic}"`;
      const call = replay.subscribe({ filters: [`${filter},namespace=="${ns}"`], fromSeq: 0, since }, md);
      // A replay stream stays open for new events: stop once the backlog has arrived, that is once the stream
      // has been quiet for `waitMs` (on a loaded machine a long backlog arrives in bursts, not at once).
      let quiet = setTimeout(() => call.cancel(), Math.max(waitMs, 2_000));
      call.on('data', (e: SequencedEnvelope) => {
        got.push(e);
        clearTimeout(quiet);
        quiet = setTimeout(() => call.cancel(), waitMs);
      });
      call.on('error', (e: grpc.ServiceError) => {
        clearTimeout(quiet);
        if (e.code === grpc.status.CANCELLED) resolve(got);
        else reject(e);
      });
    });

  /** No bundle, runc state or cgroup of the task remains. */
  const expectNothingLeft = async (id: string): Promise<void> => {
    const state = join(d.dir, 'state');
    expect(existsSync(join(state, 'tasks', ns, id))).toBe(false);
    expect(existsSync(join(state, 'runc', ns, id))).toBe(false);
    for (const controller of await readdir('/sys/fs/cgroup')) {
      expect(existsSync(join('/sys/fs/cgroup', controller, ns, id)), `${controller} cgroup of ${id}`).toBe(false);
    }
  };
});

async function waitFor(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}
