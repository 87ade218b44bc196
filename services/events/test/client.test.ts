import { codeOf, ErrorCode } from '@berth/common/errors';
import { createInProcessBus, type EventBus } from '@berth/common/event-bus';
import { type BoundServer, createServer, listen } from '@berth/common/grpc-server';
import { nopLogger } from '@berth/common/log';
import { registerAll } from '@berth/common/service';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type EventsClient, remoteEvents } from '../src/client.js';
import { createEventsModule } from '../src/index.js';

/** @berth/events/client against the events module on a TCP port: live, replayed, and ended by its signal. */
describe('remoteEvents', () => {
  let bus: EventBus;
  let bound: BoundServer;
  let client: EventsClient;
  const publish = (namespace: string, topic: string) =>
    bus.publish({ timestamp: new Date(), namespace, topic, event: { typeUrl: 'test/x', value: new Uint8Array() } });

  beforeAll(async () => {
    bus = createInProcessBus();
    const server = createServer();
    registerAll(server, [await createEventsModule({ bus, log: nopLogger })]);
    bound = await listen(server, '127.0.0.1:0');
    client = remoteEvents(bound.address);
  });
  afterAll(async () => {
    client?.close();
    await bound?.close(0);
    await bus?.close();
  });

  it('replays from a sequence with the sequence and node, filtered', async () => {
    await publish('a', '/one');
    await publish('b', '/two');
    const ac = new AbortController();
    const seen: { seq: number; topic: string | undefined }[] = [];
    const it = client.replay(
      { namespace: 'a', lease: undefined, signal: ac.signal },
      {
        filters: ['namespace==b'],
        fromSeq: 1,
        since: undefined,
      },
    );
    for await (const e of it) {
      seen.push({ seq: e.seq, topic: e.envelope?.topic });
      break;
    }
    expect(seen).toEqual([{ seq: 2, topic: '/two' }]);
  });

  it('delivers new events live, and an aborted subscription throws the cancellation', async () => {
    const ac = new AbortController();
    const topics: string[] = [];
    const done = (async () => {
      for await (const e of client.subscribe({ namespace: 'a', lease: undefined, signal: ac.signal }, [])) {
        topics.push(e.topic);
        if (topics.length === 1) ac.abort();
      }
    })().then(
      () => 'ended',
      (e: unknown) => codeOf(e),
    );
    // The subscription is open once the server has it; publish until the first event arrives.
    while (topics.length === 0) {
      await publish('a', '/live');
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(await done).toBe(ErrorCode.Canceled);
    expect(topics).toEqual(['/live']);
  });
});
