import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type RunningNode, startNode } from '@berth/berthd/compose';
import { loadConfig } from '@berth/berthd/config';
import type { StoredEvent } from '@berth/common/event-bus';
import { nopLogger } from '@berth/common/log';
import { NamespaceCreate, NamespaceDelete, NamespaceUpdate } from '@berth/proto/containerd/events/namespace';
import { NamespacesClient } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import { type TestNats, useNats } from '@berth/testing/nats';
import { type TestPostgres, usePostgres } from '@berth/testing/postgres';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr, tableRows } from './src/ctr.js';

type Backend = { db: 'pglite' | 'postgres'; bus: 'in-process' | 'nats' };
const matrix: Backend[] = [
  { db: 'pglite', bus: 'in-process' },
  { db: 'postgres', bus: 'nats' },
  { db: 'postgres', bus: 'in-process' },
  { db: 'pglite', bus: 'nats' },
];

function call<Res>(fn: (md: grpc.Metadata, cb: (e: grpc.ServiceError | null, r?: Res) => void) => void): Promise<Res> {
  const md = new grpc.Metadata();
  md.set('containerd-namespace', 'default');
  return new Promise((resolve, reject) => fn(md, (e, r) => (e ? reject(e) : resolve(r as Res))));
}

async function nextEvents(it: AsyncIterator<StoredEvent>, n: number): Promise<StoredEvent[]> {
  const out: StoredEvent[] = [];
  const timeout = setTimeout(() => undefined, 0);
  clearTimeout(timeout);
  while (out.length < n) {
    const r = await Promise.race([
      it.next(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`only ${out.length}/${n} events`)), 10_000)),
    ]);
    if (r.done) break;
    out.push(r.value);
  }
  return out;
}

describe.each(matrix)('namespaces on $db with events on $bus', (backend) => {
  let dir: string;
  let pg: TestPostgres | undefined;
  let nats: TestNats | undefined;
  let node: RunningNode;
  let client: NamespacesClient;
  const ns = `t${Math.random().toString(36).slice(2, 8)}`;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-found-'));
    if (backend.db === 'postgres') pg = await usePostgres();
    if (backend.bus === 'nats') nats = await useNats();
    const cfg = loadConfig({
      flags: {
        root: join(dir, 'root'),
        state: join(dir, 'state'),
        address: join(dir, 'berth.sock'),
        ...(nats ? { nats: nats.url } : {}),
      },
      // A URL that may carry a password goes through the environment: berthd refuses it as a flag.
      env: pg ? { BERTH_POSTGRES: pg.url } : {},
    });
    node = await startNode(cfg, { kind: 'all' }, nopLogger);
    client = new NamespacesClient(node.address, grpc.credentials.createInsecure());
  });

  afterAll(async () => {
    client?.close();
    await node?.close();
    await pg?.drop();
    await nats?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('ctr create/label/rm publish /namespaces/* events in order, with containerd payloads', async () => {
    const bus = await node.bus();
    const controller = new AbortController();
    const since = new Date(Date.now() - 1000);
    const events = bus
      .subscribe({ from: { kind: 'time', time: since }, namespace: ns, signal: controller.signal })
      [Symbol.asyncIterator]();

    expect((await ctr(node.address.replace('unix://', ''), ['namespaces', 'create', ns, 'a=b'])).code).toBe(0);
    expect((await ctr(node.address.replace('unix://', ''), ['namespaces', 'label', ns, 'a=c'])).code).toBe(0);
    const ls = await ctr(node.address.replace('unix://', ''), ['namespaces', 'ls']);
    expect(tableRows(ls.stdout)).toContainEqual([ns, 'a=c']);
    expect((await ctr(node.address.replace('unix://', ''), ['namespaces', 'rm', ns])).code).toBe(0);

    const got = await nextEvents(events, 3);
    controller.abort();
    expect(got.map((e) => [e.namespace, e.topic, e.event.typeUrl])).toEqual([
      [ns, '/namespaces/create', 'containerd.events.NamespaceCreate'],
      [ns, '/namespaces/update', 'containerd.events.NamespaceUpdate'],
      [ns, '/namespaces/delete', 'containerd.events.NamespaceDelete'],
    ]);
    expect(NamespaceCreate.decode(got[0]!.event.value)).toEqual({ name: ns, labels: { a: 'b' } });
    expect(NamespaceUpdate.decode(got[1]!.event.value)).toEqual({ name: ns, labels: { a: 'c' } });
    expect(NamespaceDelete.decode(got[2]!.event.value)).toEqual({ name: ns });
    expect(got[0]!.seq).toBeLessThan(got[1]!.seq);
  });

  it('Get of a namespace that was never created answers with no labels', async () => {
    const res = await call<{ namespace?: { name: string; labels: Record<string, string> } }>((md, cb) =>
      client.get({ name: `never${ns}` }, md, cb),
    );
    expect(res.namespace).toEqual({ name: `never${ns}`, labels: {} });
  });

  it('bad input gets containerd codes and messages, and changes nothing', async () => {
    const before = await call<{ namespaces: unknown[] }>((md, cb) => client.list({ filter: '' }, md, cb));
    const codeOf = async (p: Promise<unknown>): Promise<[number, string]> => {
      try {
        await p;
        return [0, ''];
      } catch (e) {
        const err = e as grpc.ServiceError;
        return [err.code, err.details];
      }
    };
    expect(await codeOf(call((md, cb) => client.create({ namespace: { name: '-bad', labels: {} } }, md, cb)))).toEqual([
      grpc.status.INVALID_ARGUMENT,
      'identifier "-bad" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument',
    ]);
    expect(await codeOf(call((md, cb) => client.create({ namespace: { name: '', labels: {} } }, md, cb)))).toEqual([
      grpc.status.INVALID_ARGUMENT,
      'identifier must not be empty: invalid argument',
    ]);
    const [bigCode] = await codeOf(
      call((md, cb) => client.create({ namespace: { name: `big${ns}`, labels: { k: 'x'.repeat(5000) } } }, md, cb)),
    );
    expect(bigCode).toBe(grpc.status.INVALID_ARGUMENT);
    expect(await codeOf(call((md, cb) => client.delete({ name: `nope${ns}` }, md, cb)))).toEqual([
      grpc.status.NOT_FOUND,
      `namespace "nope${ns}": not found`,
    ]);
    expect(
      await codeOf(
        call((md, cb) => client.update({ namespace: { name: `x${ns}`, labels: {} }, updateMask: ['name'] }, md, cb)),
      ),
    ).toEqual([grpc.status.INVALID_ARGUMENT, 'cannot update "name" field: invalid argument']);
    await call((md, cb) => client.create({ namespace: { name: `dup${ns}`, labels: {} } }, md, cb));
    expect(
      await codeOf(call((md, cb) => client.create({ namespace: { name: `dup${ns}`, labels: {} } }, md, cb))),
    ).toEqual([grpc.status.ALREADY_EXISTS, `namespace "dup${ns}": already exists`]);
    await call((md, cb) => client.delete({ name: `dup${ns}` }, md, cb));
    const after = await call<{ namespaces: unknown[] }>((md, cb) => client.list({ filter: '' }, md, cb));
    expect(after.namespaces).toEqual(before.namespaces);
  });
});

describe('split: metadata and gateway as separate processes', () => {
  let dir: string;
  let pg: TestPostgres;
  let nats: TestNats;
  let metadata: BerthdProcess;
  let gateway: BerthdProcess;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-split-'));
    pg = await usePostgres();
    nats = await useNats();
    const config = {
      postgres: pg.url,
      nats: nats.url,
      metadata: { address: `unix://${join(dir, 'metadata.sock')}` },
    };
    await writeFile(join(dir, 'note'), 'split test');
    metadata = await startBerthd({ role: ['serve', 'metadata'], config, dir, socket: join(dir, 'metadata.sock') });
    gateway = await startBerthd({ role: ['serve', 'gateway'], config, dir, socket: join(dir, 'gateway.sock') });
  });

  afterAll(async () => {
    await gateway?.stop();
    await metadata?.stop();
    await pg?.drop();
    await nats?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('ctr works through the gateway, which lists the upstream plugins', async () => {
    const create = await ctr(gateway.socket, ['namespaces', 'create', 'splitns', 'team=a']);
    expect(create.code, create.stderr).toBe(0);
    const ls = await ctr(gateway.socket, ['namespaces', 'ls']);
    expect(tableRows(ls.stdout)).toContainEqual(['splitns', 'team=a']);
    // The same record seen directly at the metadata service: the gateway only forwarded bytes.
    const direct = await ctr(metadata.socket, ['namespaces', 'ls']);
    expect(tableRows(direct.stdout)).toContainEqual(['splitns', 'team=a']);

    const plugins = tableRows((await ctr(gateway.socket, ['plugins', 'ls'])).stdout);
    expect(plugins).toContainEqual(['io.containerd.grpc.v1', 'namespaces', '-', 'ok']);
    expect(plugins).toContainEqual(['io.containerd.metadata.v1', 'postgres', '-', 'ok']);
    expect(plugins).toContainEqual(['io.berth.gateway.v1', 'metadata', '-', 'ok']);
    expect((await ctr(gateway.socket, ['namespaces', 'rm', 'splitns'])).code).toBe(0);
  });

  it('reports an unreachable upstream as Unavailable and as an errored plugin', async () => {
    await metadata.stop();
    const ls = await ctr(gateway.socket, ['namespaces', 'ls']);
    expect(ls.code).not.toBe(0);
    expect(ls.stderr).toMatch(/Unavailable|connection|No connection/i);
    const plugins = tableRows((await ctr(gateway.socket, ['plugins', 'ls'])).stdout);
    expect(plugins).toContainEqual(['io.containerd.grpc.v1', 'namespaces', '-', 'error']);
    expect(plugins).toContainEqual(['io.containerd.grpc.v1', 'version', '-', 'ok']);
  });
});
