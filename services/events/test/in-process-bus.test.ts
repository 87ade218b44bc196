import { createInProcessBus } from '@berth/common/event-bus';
import { busConformance } from './bus.suite.js';

busConformance('in-process', async (opts) => {
  const bus = createInProcessBus({
    node: 'solo',
    ...(opts?.maxEvents !== undefined ? { maxEvents: opts.maxEvents } : {}),
  });
  return { bus, peer: bus, nodes: { bus: 'solo', peer: 'solo' }, teardown: () => bus.close() };
});
