import { nopLogger } from '@berth/common/log';
import { createNatsBus } from '@berth/common/nats-event-bus';
import { TaskStart } from '@berth/proto/containerd/events/task';
import { startNatsServer } from '@berth/testing/nats';
import { expect, it } from 'vitest';
import { taskEvents } from '../src/events.js';

it('task events held back by a NATS outage are published as soon as the bus is back, not when the backoff ends', async () => {
  const nats = await startNatsServer();
  const publisher = await createNatsBus({ url: nats.url, log: nopLogger, node: 'node-a' });
  const reader = await createNatsBus({ url: nats.url, log: nopLogger, node: 'node-b' });
  const events = taskEvents(publisher, 'node-a', nopLogger);
  const ac = new AbortController();
  try {
    const got: Array<{ id: string; at: number }> = [];
    void (async () => {
      for await (const e of reader.subscribe({ from: { kind: 'all' }, namespace: 'ns', signal: ac.signal }))
        got.push({ id: TaskStart.decode(e.event.value).containerId, at: Date.now() });
    })();
    events.start('ns', { containerId: 'before', pid: 1 });
    await events.flush();

    await nats.stop();
    for (const id of ['during0', 'during1', 'during2']) events.start('ns', { containerId: id, pid: 1 });
    // Long enough for the retries to back off to seconds between attempts.
    await new Promise((r) => setTimeout(r, 6_500));
    await nats.restart();
    const back = Date.now();
    await events.flush();
    const deadline = Date.now() + 10_000;
    while (got.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));

    expect(got.map((g) => g.id)).toEqual(['before', 'during0', 'during1', 'during2']);
    const late = Math.max(...got.map((g) => g.at)) - back;
    console.info(`task events arrived ${late} ms after NATS was back`);
    expect(late).toBeLessThan(2_000);
  } finally {
    ac.abort();
    events.close();
    await reader.close();
    await publisher.close();
    await nats.dispose();
  }
}, 30_000);
