import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { dockerCli, repoRoot } from './engine.js';

const run = promisify(execFile);

export interface Output {
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command; on failure the error says the command, its exit code and its output. */
export async function sh(
  cmd: string,
  args: readonly string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {},
): Promise<Output> {
  try {
    return await run(cmd, args, {
      env: opts.env ?? process.env,
      timeout: opts.timeoutMs ?? 120_000,
      // A client stuck past its deadline (docker-compose ignores SIGTERM while it waits) must not hang the test.
      killSignal: 'SIGKILL',
      cwd: opts.cwd ?? repoRoot,
      maxBuffer: 64 * 1024 * 1024,
    });
  } catch (e) {
    const x = e as Error & { stdout?: string; stderr?: string; code?: number | string };
    throw new Error(
      `${cmd} ${args.join(' ')} failed (${x.code ?? x.message}):\n${(x.stderr ?? '').slice(-4000)}${(x.stdout ?? '').slice(-2000)}`,
    );
  }
}

/** One compose project of the repo's docker-compose.yml on an engine, with its environment. */
export class ComposeProject {
  readonly env: NodeJS.ProcessEnv;

  constructor(
    readonly name: string,
    dockerHost: string,
    vars: Readonly<Record<string, string>>,
  ) {
    this.env = { ...process.env, ...vars, DOCKER_HOST: dockerHost, COMPOSE_PROJECT_NAME: name };
  }

  compose(args: readonly string[], timeoutMs = 180_000): Promise<Output> {
    return sh('docker-compose', ['-f', join(repoRoot, 'docker-compose.yml'), '-p', this.name, ...args], {
      env: this.env,
      timeoutMs,
    });
  }

  docker(args: readonly string[], timeoutMs = 120_000): Promise<Output> {
    return sh(dockerCli, args, { env: this.env, timeoutMs });
  }

  /** Every container of the project (running or not), with its service, state and health. */
  async containers(): Promise<ContainerState[]> {
    const ids = (
      await this.docker(['ps', '-aq', '--filter', `label=com.docker.compose.project=${this.name}`], 30_000)
    ).stdout
      .split('\n')
      .filter(Boolean);
    if (ids.length === 0) return [];
    const inspected = JSON.parse((await this.docker(['inspect', ...ids], 30_000)).stdout) as InspectedContainer[];
    return inspected.map((c) => ({
      id: c.Id,
      name: c.Name.replace(/^\//, ''),
      service: c.Config.Labels['com.docker.compose.service'] ?? '',
      status: c.State.Status,
      exitCode: c.State.ExitCode,
      health: c.State.Health?.Status,
      pid: c.State.Pid,
    }));
  }

  /** Names of the project's leftover networks and volumes. */
  async leftovers(): Promise<string[]> {
    const label = `label=com.docker.compose.project=${this.name}`;
    const networks = (await this.docker(['network', 'ls', '-q', '--filter', label])).stdout.split('\n');
    const volumes = (await this.docker(['volume', 'ls', '-q', '--filter', label])).stdout.split('\n');
    const containers = (await this.docker(['ps', '-aq', '--filter', label])).stdout.split('\n');
    return [
      ...containers.filter(Boolean).map((c) => `container ${c}`),
      ...networks.filter(Boolean).map((n) => `network ${n}`),
      ...volumes.filter(Boolean).map((v) => `volume ${v}`),
    ];
  }

  /** Every volume on the engine, named or anonymous, sorted. */
  async volumes(): Promise<string[]> {
    return (await this.docker(['volume', 'ls', '-q'])).stdout.split('\n').filter(Boolean).sort();
  }

  /**
   * Waits until every long-running service's containers are healthy (and one-shot ones exited 0); returns the
   * seconds that took. Throws with the states and the last logs of the unhealthy ones at the deadline.
   */
  async waitHealthy(expected: Readonly<Record<string, number>>, timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    let states: ContainerState[] = [];
    while (Date.now() - t0 < timeoutMs) {
      states = await this.containers();
      const ok = Object.entries(expected).every(([service, count]) => {
        const mine = states.filter((s) => s.service === service);
        if (count === 0) return mine.length > 0 && mine.every((s) => s.status === 'exited' && s.exitCode === 0);
        return mine.filter((s) => s.status === 'running' && s.health === 'healthy').length === count;
      });
      if (ok) return (Date.now() - t0) / 1000;
      const failed = states.find((s) => s.status === 'exited' && s.exitCode !== 0 && s.service !== 'migrate');
      if (failed) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    const bad = states.filter((s) => s.health !== 'healthy' && !(s.status === 'exited' && s.exitCode === 0));
    const logs = await Promise.all(
      bad.map(async (s) => `--- ${s.name} (${s.status}, ${s.health ?? 'no health'}):\n${await this.logs(s.id)}`),
    );
    throw new Error(`not all healthy after ${(Date.now() - t0) / 1000} s:\n${logs.join('\n')}`);
  }

  /** Every container's state, and the last logs of those not healthy: why an `up` failed. */
  async diagnose(): Promise<string> {
    const states = await this.containers().catch(() => []);
    const lines = await Promise.all(
      states.map(async (s) => {
        const head = `--- ${s.name} (${s.status}, exit ${s.exitCode}, ${s.health ?? 'no health'})`;
        return s.health === 'healthy' || (s.status === 'exited' && s.exitCode === 0)
          ? head
          : `${head}:\n${await this.logs(s.id)}`;
      }),
    );
    return lines.join('\n');
  }

  async logs(container: string): Promise<string> {
    const out = await this.docker(['logs', '--tail', '30', container], 30_000).catch((e: Error) => ({
      stdout: e.message,
      stderr: '',
    }));
    return `${out.stdout}${out.stderr}`;
  }
}

export interface ContainerState {
  readonly id: string;
  readonly name: string;
  readonly service: string;
  readonly status: string;
  readonly exitCode: number;
  readonly health: string | undefined;
  /** The container's main process on the host (0 when not running). */
  readonly pid: number;
}

interface InspectedContainer {
  Id: string;
  Name: string;
  Config: { Labels: Record<string, string> };
  State: { Status: string; ExitCode: number; Pid: number; Health?: { Status: string } };
}
