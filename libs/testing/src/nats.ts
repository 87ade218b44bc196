/**
 * NATS with JetStream for tests.
 *
 * `useNats()` gives any working server, first that works of:
 *  1. testcontainers `nats:2.10-alpine -js` (only where a container runtime works; shared per process);
 *  2. $BERTH_TEST_NATS_URL, e.g. `nats://127.0.0.1:4222` (credentials may be in the userinfo);
 *     if set but unreachable or without JetStream, useNats() throws instead of falling back;
 *  3. the server on 127.0.0.1:4222, if it answers INFO with jetstream enabled (skipped when
 *     BERTH_TEST_LOOPBACK=0);
 *  4. a private nats-server child process (see `startNatsServer`).
 * With 1-3 the server is shared with other tests: use unique stream and subject names
 * (e.g. `uniqueName()` from `@berth/testing/unique-name`).
 *
 * `startNatsServer()` always spawns a private server you can stop, kill and restart.
 */

import type { ServerSource } from './attempts.js';
import { Attempts, describe } from './attempts.js';
import { containerRuntime, sharedContainer } from './containers.js';
import { loopbackAllowed } from './loopback.js';
import { natsHostPort, natsInfo } from './nats-info.js';
import { startNatsServer } from './nats-server.js';

export type { NatsProcess, StartNatsOptions } from './nats-server.js';
export { startNatsServer } from './nats-server.js';

export interface TestNats {
  /** Server URL for `connect({ servers: url })`. */
  readonly url: string;
  readonly source: ServerSource;
  /** Releases the server: stops it if this call started it; shared servers are left running. */
  stop(): Promise<void>;
}

const LOOPBACK_URL = 'nats://127.0.0.1:4222';

async function checkJetStream(url: string, timeoutMs: number): Promise<void> {
  const { host, port } = natsHostPort(url);
  const info = await natsInfo(host, port, timeoutMs);
  if (info.jetstream !== true) {
    throw new Error(`${host}:${port} is NATS ${info.version} but JetStream is not enabled (start it with -js)`);
  }
}

/** A NATS server with JetStream for this test; see the module doc for the order tried. */
export async function useNats(): Promise<TestNats> {
  const attempts = new Attempts('NATS (JetStream)');

  const rt = await containerRuntime();
  if (rt.available) {
    try {
      const lease = await sharedContainer('nats', (tc) =>
        new tc.GenericContainer('nats:2.10-alpine')
          .withCommand(['-js'])
          .withExposedPorts(4222)
          .withWaitStrategy(tc.Wait.forLogMessage(/Server is ready/))
          .start(),
      );
      const c = lease.value;
      return {
        url: `nats://${c.getHost()}:${c.getMappedPort(4222)}`,
        source: 'container',
        stop: () => lease.release(),
      };
    } catch (err) {
      attempts.note('testcontainers nats:2.10-alpine', err);
    }
  } else {
    attempts.note('testcontainers', rt.reason);
  }

  const envUrl = process.env['BERTH_TEST_NATS_URL'];
  if (envUrl) {
    try {
      await checkJetStream(envUrl, 5000);
    } catch (err) {
      throw new Error(`BERTH_TEST_NATS_URL=${envUrl} is set but unusable: ${describe(err)}`, { cause: err });
    }
    return { url: envUrl, source: 'env', stop: async () => {} };
  }
  attempts.note('$BERTH_TEST_NATS_URL', 'not set');

  if (loopbackAllowed()) {
    try {
      await checkJetStream(LOOPBACK_URL, 1000);
      return { url: LOOPBACK_URL, source: 'loopback', stop: async () => {} };
    } catch (err) {
      attempts.note(`loopback ${LOOPBACK_URL}`, err);
    }
  } else {
    attempts.note(`loopback ${LOOPBACK_URL}`, 'skipped (BERTH_TEST_LOOPBACK=0)');
  }

  try {
    const server = await startNatsServer();
    return { url: server.url, source: 'spawned', stop: () => server.dispose() };
  } catch (err) {
    attempts.note('spawn nats-server -js on a free port', err);
  }
  return attempts.fail();
}
