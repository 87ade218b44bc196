import { nopLogger } from '@berth/common/log';
import { createNatsBus, nodeHeader } from '@berth/common/nats-event-bus';
import { type TestNats, useNats } from '@berth/testing/nats';
import { uniqueName } from '@berth/testing/unique-name';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busConformance, envelope } from './bus.suite.js';

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
  // Two processes of two nodes on one stream.
  const bus = await createNatsBus({ ...common, node: 'node-a' });
  const peer = await createNatsBus({ ...common, node: 'node-b' });
  return {
    bus,
    peer,
    nodes: { bus: 'node-a', peer: 'node-b' },
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

describe('NATS JetStream bus: the publishing node', () => {
  it("is in each message's Berth-Node header, for any NATS client to read", async () => {
    const stream = uniqueName('BERTH_TEST_');
    const subjectPrefix = uniqueName('berthtest.');
    const bus = await createNatsBus({ url: nats.url, log: nopLogger, stream, subjectPrefix, node: 'node-c' });
    const nc = await connect({ servers: nats.url });
    try {
      await bus.publish(envelope('default', '/a/b', 'x'));
      const jsm = await jetstreamManager(nc);
      const m = await jsm.streams.getMessage(stream, { seq: 1 });
      expect(m?.header.get(nodeHeader)).toBe('node-c');
      expect(m?.header.get('Berth-Node')).toBe('node-c');
    } finally {
      await bus.close();
      await (await jetstreamManager(nc)).streams.delete(stream);
      await nc.close();
    }
  });
});
