import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const repoRoot = resolve(fileURLToPath(import.meta.url), '../../../..');
/** Docker's own 20.10 client from Debian's docker.io, matching its engine (another `docker` may be first in PATH). */
export const dockerCli = existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
/** Kept across runs: the debootstrap tarball and the engine's images and build cache. */
export const cacheDir = process.env['BERTH_DEPLOY_CACHE'] ?? '/var/cache/berth-deploy';
/** Private to this test's engine: sockets, pid files, the engine's exec root. */
const runDir = '/run/berth-deploy';

export interface Engine {
  /** DOCKER_HOST for the docker and docker-compose clients. */
  readonly host: string;
  /** Stops what this process started (nothing when it reused a running engine). */
  stop(): Promise<void>;
  /** What an earlier run left on this test's private engine and was removed before this one (empty otherwise). */
  readonly cleared: readonly string[];
  /** The last lines of the private engine's log (dockerd and containerd), for a failure's message. */
  logTail(lines?: number): Promise<string>;
}

/**
 * A Docker engine for the deploy test: $BERTH_TEST_DOCKER_HOST if set; else this test's private engine at
 * /run/berth-deploy/docker.sock if one already answers; else one started now, with its own containerd, data
 * root, exec root, pid files and socket, so it never meets another engine or containerd on the machine. It
 * leaves the host's firewall alone (`--iptables=false`: the test needs no NAT, only bridges and published
 * loopback ports) and starts containers through `runc-sandboxed`, which drops the capabilities this machine's
 * root lacks from `privileged` containers. Throws, saying why, where no engine can start.
 */
export async function startEngine(): Promise<Engine> {
  const given = process.env['BERTH_TEST_DOCKER_HOST'];
  if (given) {
    await answers(given, 10_000);
    return { host: given, stop: async () => undefined, cleared: [], logTail: async () => '' };
  }
  const host = `unix://${runDir}/docker.sock`;
  if (
    await answers(host, 2_000).then(
      () => true,
      () => false,
    )
  )
    return { host, stop: async () => undefined, cleared: await clearLeftovers(host), logTail };

  for (const bin of ['dockerd', 'containerd', 'runc']) {
    if (!(await which(bin))) throw new Error(`${bin} is not installed (scripts/install-deps.sh installs docker.io)`);
  }
  await mkdir(join(runDir, 'containerd'), { recursive: true, mode: 0o711 });
  await mkdir(cacheDir, { recursive: true });
  const containerdConfig = join(runDir, 'containerd.toml');
  await writeFile(
    containerdConfig,
    [
      'version = 2',
      `root = "${cacheDir}/containerd"`,
      `state = "${runDir}/containerd"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${runDir}/containerd/containerd.sock"`,
      '[ttrpc]',
      `  address = "${runDir}/containerd/containerd.sock.ttrpc"`,
      '',
    ].join('\n'),
  );
  const containerd = daemon('containerd', ['--config', containerdConfig], join(runDir, 'containerd.log'));
  const dockerd = daemon(
    'dockerd',
    [
      `--data-root=${cacheDir}/docker`,
      `--exec-root=${runDir}/docker`,
      `--pidfile=${runDir}/dockerd.pid`,
      `--host=${host}`,
      `--containerd=${runDir}/containerd/containerd.sock`,
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
      `--add-runtime=sandboxed=${join(repoRoot, 'test/deploy/runc-sandboxed')}`,
      '--default-runtime=sandboxed',
    ],
    join(runDir, 'dockerd.log'),
  );
  const stop = async (): Promise<void> => {
    await stopChild(dockerd, 20_000);
    await stopChild(containerd, 10_000);
    // dockerd leaves its default network namespace mounted.
    await run('umount', [join(runDir, 'docker/netns/default')]).catch(() => undefined);
  };
  try {
    await answers(host, 60_000, [containerd, dockerd]);
  } catch (e) {
    await stop();
    const log = await readFile(join(runDir, 'dockerd.log'), 'utf8').catch(() => '');
    throw new Error(`${(e as Error).message}\n${log.split('\n').slice(-15).join('\n')}`);
  }
  return { host, stop, cleared: await clearLeftovers(host), logTail };
}

async function logTail(lines = 30): Promise<string> {
  const tail = async (f: string) =>
    `--- ${f}:\n${(await readFile(join(runDir, f), 'utf8').catch(() => '')).split('\n').slice(-lines).join('\n')}`;
  return `${await tail('dockerd.log')}\n${await tail('containerd.log')}`;
}

/**
 * The private engine's data root is kept across runs for its images, and with it any container an interrupted
 * run left: with `restart: unless-stopped`, dockerd starts those again, beside this run's project. Remove every
 * container, and the networks and volumes nothing uses; keep the images and the build cache.
 */
async function clearLeftovers(host: string): Promise<string[]> {
  const docker = (args: string[]) =>
    run(dockerCli, args, { env: { ...process.env, DOCKER_HOST: host }, timeout: 120_000, killSignal: 'SIGKILL' });
  const ids = (await docker(['ps', '-aq'])).stdout.split('\n').filter(Boolean);
  const names = ids.length
    ? (await docker(['inspect', '--format', '{{.Name}}', ...ids])).stdout.split('\n').filter(Boolean)
    : [];
  if (ids.length) await docker(['rm', '-f', '-v', ...ids]);
  await docker(['network', 'prune', '-f']);
  await docker(['volume', 'prune', '-f']);
  return names.map((n) => `container ${n.replace(/^\//, '')}`);
}

function daemon(bin: string, args: string[], logFile: string): ChildProcess {
  const log = openSync(logFile, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', log, log], env: { ...process.env, DOCKER_HOST: '' } });
  child.on('error', () => undefined);
  return child;
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

async function answers(host: string, timeoutMs: number, children: ChildProcess[] = []): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const dead = children.find((c) => c.exitCode !== null || c.signalCode !== null);
    if (dead) throw new Error(`${dead.spawnfile} exited (${dead.exitCode ?? dead.signalCode}) while starting`);
    try {
      await run(dockerCli, ['version', '--format', '{{.Server.Version}}'], {
        env: { ...process.env, DOCKER_HOST: host },
        timeout: 10_000,
      });
      return;
    } catch (e) {
      last = (e as { stderr?: string }).stderr?.trim() || (e as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`no Docker engine answers at ${host}: ${last}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function which(bin: string): Promise<boolean> {
  return run('sh', ['-c', `command -v ${bin}`]).then(
    () => true,
    () => false,
  );
}
