import type { RequestContext } from '@berth/common/context';
import { ServiceError } from '@berth/common/errors';
import { createInProcessBus, type StoredEvent } from '@berth/common/event-bus';
import { nopLogger } from '@berth/common/log';
import { ImageCreate } from '@berth/proto/containerd/events/image';
import { NamespaceCreate } from '@berth/proto/containerd/events/namespace';
import { TaskExit } from '@berth/proto/containerd/events/task';
import { describe, expect, it } from 'vitest';
import { createExchange, type Payload } from './exchange.js';
import { compileEventFilter } from './filters.js';

const ctx = (namespace: string | undefined, signal = new AbortController().signal): RequestContext => ({
  namespace,
  lease: undefined,
  signal,
  log: nopLogger,
});
const exit = (containerId: string): Payload => ({
  typeUrl: 'containerd.events.TaskExit',
  value: TaskExit.encode({ containerId, id: containerId, pid: 1, exitStatus: 0 }).finish(),
});
const image = (name: string): Payload => ({
  typeUrl: 'containerd.services.images.v1.ImageCreate',
  value: ImageCreate.encode({ name, labels: { team: 'a' } }).finish(),
});
const ns = (name: string): Payload => ({
  typeUrl: 'containerd.events.NamespaceCreate',
  value: NamespaceCreate.encode({ name, labels: {} }).finish(),
});

async function rejection(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ServiceError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

describe('Exchange.publish / forward validate as containerd exchange does', () => {
  const exchange = createExchange(createInProcessBus());

  it('requires a valid namespace', async () => {
    const e = await rejection(exchange.publish(ctx(undefined), '/a', exit('c')));
    expect(e.code).toBe('failed_precondition');
    expect(e.message).toBe('failed publishing event: namespace is required: failed precondition');
    const bad = await rejection(exchange.publish(ctx('no good'), '/a', exit('c')));
    expect(bad.code).toBe('invalid_argument');
    expect(bad.message).toMatch(/^failed publishing event: namespace validation: identifier "no good" must match/);
  });

  it('validates topics with containerd messages', async () => {
    const cases: Array<[string, string]> = [
      ['', 'envelope topic "": must not be empty: invalid argument'],
      ['tasks/exit', `envelope topic "tasks/exit": must start with '/': invalid argument`],
      ['/', 'envelope topic "/": must have at least one component: invalid argument'],
      [
        '/tasks//exit',
        'envelope topic "/tasks//exit": failed validation on component "": identifier must not be empty: invalid argument',
      ],
      [
        '/tasks/ex it',
        'envelope topic "/tasks/ex it": failed validation on component "ex it": identifier "ex it" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument',
      ],
    ];
    for (const [topic, message] of cases) {
      const e = await rejection(exchange.publish(ctx('default'), topic, exit('c')));
      expect(e.code).toBe('invalid_argument');
      expect(e.message).toBe(message);
    }
  });

  it('forward keeps the envelope but rejects a bad namespace, topic or missing timestamp', async () => {
    const env = {
      timestamp: new Date('2024-01-01T00:00:00Z'),
      namespace: 'other',
      topic: '/tasks/exit',
      event: exit('c'),
    };
    const bad = await rejection(exchange.forward(ctx('default'), { ...env, namespace: '' }));
    expect(bad.message).toBe('event envelope has invalid namespace: identifier must not be empty: invalid argument');
    const zero = await rejection(exchange.forward(ctx('default'), { ...env, timestamp: new Date(-62135596800000) }));
    expect(zero.message).toBe('timestamp must be set on forwarded event: invalid argument');
    const none = await rejection(exchange.forward(ctx('default'), { ...env, timestamp: undefined }));
    expect(none.code).toBe('invalid_argument');
    const topic = await rejection(exchange.forward(ctx('default'), { ...env, topic: 'x' }));
    expect(topic.message).toBe(`envelope topic "x": must start with '/': invalid argument`);
  });
});

describe('Exchange.subscribe filters', () => {
  it('rejects malformed filters at once with containerd wording', () => {
    const exchange = createExchange(createInProcessBus());
    expect(() => exchange.subscribe(ctx(undefined), { filters: ['topic=='] })).toThrow(
      /^failed parsing subscription filters: filters: parse error: .*: invalid argument$/,
    );
  });

  it('applies topic==, topic~=, namespace== and event.<field>, OR-ing filter strings', async () => {
    const bus = createInProcessBus();
    const exchange = createExchange(bus);
    const published: Array<[string, string, Payload]> = [
      ['default', '/tasks/exit', exit('c1')],
      ['other', '/tasks/exit', exit('c2')],
      ['default', '/images/create', image('redis')],
      ['default', '/namespaces/create', ns('x')],
      ['other', '/images/create', image('nginx')],
    ];
    for (const [n, topic, payload] of published) await exchange.publish(ctx(n), topic, payload);

    const run = async (filters: string[]): Promise<string[]> => {
      const ac = new AbortController();
      const out: StoredEvent[] = [];
      const done = (async () => {
        for await (const e of exchange.subscribe(ctx(undefined, ac.signal), { filters, from: { kind: 'all' } }))
          out.push(e);
      })();
      await new Promise((r) => setTimeout(r, 20));
      ac.abort();
      await done;
      return out.map((e) => `${e.namespace}${e.topic}`);
    };

    expect(await run([])).toHaveLength(5);
    expect(await run([''])).toHaveLength(5);
    expect(await run(['topic=="/tasks/exit"'])).toEqual(['default/tasks/exit', 'other/tasks/exit']);
    expect(await run(['topic~="/images/"'])).toEqual(['default/images/create', 'other/images/create']);
    expect(await run(['namespace==other'])).toEqual(['other/tasks/exit', 'other/images/create']);
    expect(await run(['topic~="^/images/",namespace==default'])).toEqual(['default/images/create']);
    expect(await run(['event.container_id==c2', 'event.name==redis'])).toEqual([
      'other/tasks/exit',
      'default/images/create',
    ]);
    expect(await run(['event.labels.team==a,namespace!=default'])).toEqual(['other/images/create']);
    expect(await run(['event.pid==1'])).toEqual([]); // numbers are not filterable in containerd either
    expect(await run(['event.name'])).toEqual([
      'default/images/create',
      'default/namespaces/create',
      'other/images/create',
    ]);
  });

  it('pins a namespace only when every alternative requires the same one', () => {
    expect(compileEventFilter(['namespace==a,topic=="/x"']).namespace).toBe('a');
    expect(compileEventFilter(['namespace==a', 'namespace==a,topic~="y"']).namespace).toBe('a');
    expect(compileEventFilter(['namespace==a', 'namespace==b']).namespace).toBeUndefined();
    expect(compileEventFilter(['namespace!=a']).namespace).toBeUndefined();
    expect(compileEventFilter(['namespace==a', 'topic=="/x"']).namespace).toBeUndefined();
    expect(compileEventFilter([]).all).toBe(true);
  });
});
