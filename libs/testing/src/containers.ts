/**
 * testcontainers, used only where a container runtime actually works.
 *
 * The probe (`getContainerRuntimeClient()`) runs once per process and is cached. Loading
 * testcontainers costs ~0.7 s, so unless forced, it is only loaded when some sign of a runtime
 * exists: DOCKER_HOST, TESTCONTAINERS_* variables, ~/.testcontainers.properties, or a docker /
 * podman socket in the usual places.
 *
 * Env: BERTH_TEST_CONTAINERS=0 never uses containers; =1 always runs the real probe.
 */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { StartedTestContainer } from 'testcontainers';
import { describe } from './attempts.js';
import type { Lease, RefCounted } from './ref-counted.js';
import { refCounted } from './ref-counted.js';

export type Testcontainers = typeof import('testcontainers');

export type ContainerRuntime =
  | { readonly available: true; readonly tc: Testcontainers }
  | { readonly available: false; readonly reason: string };

let probe: Promise<ContainerRuntime> | undefined;

function runtimeHints(): string[] {
  const hints: string[] = [];
  for (const name of ['DOCKER_HOST', 'TESTCONTAINERS_HOST_OVERRIDE', 'TESTCONTAINERS_DOCKER_SOCKET_OVERRIDE']) {
    if (process.env[name]) hints.push(`$${name}`);
  }
  const uid = process.getuid?.() ?? 0;
  const runtimeDir = process.env['XDG_RUNTIME_DIR'] ?? `/run/user/${uid}`;
  const files = [
    join(homedir(), '.testcontainers.properties'),
    '/var/run/docker.sock',
    '/run/docker.sock',
    join(runtimeDir, 'docker.sock'),
    join(homedir(), '.docker', 'run', 'docker.sock'),
    join(homedir(), '.docker', 'desktop', 'docker.sock'),
    join(runtimeDir, 'podman', 'podman.sock'),
    '/run/podman/podman.sock',
  ];
  for (const f of files) if (existsSync(f)) hints.push(f);
  return hints;
}

async function detect(): Promise<ContainerRuntime> {
  const mode = process.env['BERTH_TEST_CONTAINERS'];
  if (mode === '0' || mode === 'false') {
    return { available: false, reason: 'disabled by BERTH_TEST_CONTAINERS=0' };
  }
  if (mode !== '1' && mode !== 'true' && runtimeHints().length === 0) {
    return {
      available: false,
      reason:
        'no DOCKER_HOST, TESTCONTAINERS_* variable, ~/.testcontainers.properties or docker/podman socket found ' +
        '(set BERTH_TEST_CONTAINERS=1 to run the testcontainers probe anyway)',
    };
  }
  try {
    const tc = await import('testcontainers');
    await tc.getContainerRuntimeClient();
    return { available: true, tc };
  } catch (err) {
    return { available: false, reason: `getContainerRuntimeClient() failed: ${describe(err)}` };
  }
}

/** Whether testcontainers can start containers here (cached for the process; never throws). */
export function containerRuntime(): Promise<ContainerRuntime> {
  probe ??= detect();
  return probe;
}

const shared = new Map<string, RefCounted<StartedTestContainer>>();

/**
 * A container shared by all callers in this process under `key`: started on first use, stopped
 * when the last lease is released (testcontainers' reaper also removes it if the process dies).
 */
export function sharedContainer(
  key: string,
  start: (tc: Testcontainers) => Promise<StartedTestContainer>,
): Promise<Lease<StartedTestContainer>> {
  let rc = shared.get(key);
  if (rc === undefined) {
    rc = refCounted(
      async () => {
        const rt = await containerRuntime();
        if (!rt.available) throw new Error(rt.reason);
        return start(rt.tc);
      },
      async (c) => {
        await c.stop();
      },
    );
    shared.set(key, rc);
  }
  return rc.acquire();
}
