import { nopLogger } from '@berth/common/log';
import { createNatsBus } from '@berth/common/nats-event-bus';
import { type TestNats, useNats } from '@berth/testing/nats';
import { uniqueName } from '@berth/testing/unique-name';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll } from 'vitest';
import { busConformance } from './bus.suite.js';

// A real JetStream server; the suite fails (never skips) when none can be had.
let nats: TestNats;
beforeAll(async () => {
  nats = await useNats();
});
afterAll(async () => {
  await nats.stop();
});

busConformance('NATS JetStream', async (opts) => {
  // Each handle gets a stream of its own: the server may be shared, and retention tests change limits.
  const stream = uniqueName('BERTH_TEST_');
  const subjectPrefix = uniqueName('berthtest.');
  const common = {
    url: nats.url,
    log: nopLogger,
    stream,
    subjectPrefix,
    ...(opts?.maxEvents !== undefined ? { maxEvents: opts.maxEvents } : {}),
  };
  const bus = await createNatsBus(common);
  const peer = await createNatsBus(common);
  return {
    bus,
    peer,
    async teardown() {
      await peer.close();
      await bus.close();
      const nc = await connect({ servers: nats.url });
      try {
        await (await jetstreamManager(nc)).streams.delete(stream);
      } finally {
        await nc.close();
      }
    },
  };
});
