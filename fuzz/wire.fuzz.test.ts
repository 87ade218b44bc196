import { type BerthdProcess, startBerthd } from '@berth/e2e/berthd';
import { ctr } from '@berth/e2e/ctr';
import { ContainersClient } from '@berth/proto/containerd/services/containers/v1/containers';
import { ImagesClient } from '@berth/proto/containerd/services/images/v1/images';
import { LeasesClient } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesClient } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import { VersionClient } from '@berth/proto/containerd/services/version/v1/version';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { methods } from './seeds/wire.js';
import { int, type Method, mutate, pick, report, rng, runsFor, seedFor } from './src/mutate.js';

/**
 * The wire fuzzer: mutated and truncated protobuf requests, built from valid ones, to every method of every
 * service of a running berthd. Every call must end with a gRPC status (no hang); no status may carry a stack
 * trace; the daemon must stay up; and what was created before the run (namespace `keep`) must be unchanged.
 */

const raw = (b: Buffer): Buffer => b;
const unaryDeadlineMs = 20_000;
const streamDeadlineMs = 20_000;
/** Streams that by design never end by themselves (events, health watches). */
const endless = /^(Subscribe|Watch)$/;
const stackTrace = /\n\s+at |\bat [\w.<>]+ \(\/|node:internal/;

interface Outcome {
  code: grpc.status;
  details: string;
}

function headers(r: () => number): grpc.Metadata {
  const md = new grpc.Metadata();
  const x = r();
  if (x < 0.9) md.set('containerd-namespace', 'fuzz');
  else if (x < 0.95) md.set('containerd-namespace', pick(r, ['Bad!', '', 'a'.repeat(100), 'fuzz.sub']));
  if (r() < 0.05) md.set('containerd-lease', pick(r, ['fuzz-l', 'missing', '']));
  return md;
}

function callOnce(client: grpc.Client, m: Method, msgs: Buffer[], md: grpc.Metadata): Promise<Outcome> {
  const subscribe = m.responseStream && endless.test(m.name);
  const deadline = Date.now() + (m.responseStream || m.requestStream ? streamDeadlineMs : unaryDeadlineMs);
  return new Promise((resolve) => {
    const done = (err: grpc.ServiceError | null): void =>
      resolve(err ? { code: err.code, details: err.details ?? '' } : { code: grpc.status.OK, details: '' });
    if (!m.requestStream && !m.responseStream) {
      client.makeUnaryRequest(m.path, raw, raw, msgs[0] ?? Buffer.alloc(0), md, { deadline }, (err) => done(err));
      return;
    }
    const call = m.requestStream
      ? client.makeBidiStreamRequest(m.path, raw, raw, md, { deadline })
      : client.makeServerStreamRequest(m.path, raw, raw, msgs[0] ?? Buffer.alloc(0), md, { deadline });
    call.on('data', () => undefined);
    call.on('error', (e: grpc.ServiceError) => done(e));
    call.on('status', (s: grpc.StatusObject) => {
      if (s.code === grpc.status.OK) done(null);
    });
    // An event stream never ends by itself: a short look, then the client hangs up.
    if (subscribe) setTimeout(() => call.cancel(), 100 + Math.random() * 200);
    if (m.requestStream) {
      const w = call as grpc.ClientDuplexStream<Buffer, Buffer>;
      for (const b of msgs) w.write(b);
      w.end();
    }
  });
}

/** Lists of what namespace `keep` holds, as bytes: equal before and after the run, or data changed. */
async function fingerprint(address: string): Promise<string> {
  const md = new grpc.Metadata();
  md.set('containerd-namespace', 'keep');
  const creds = grpc.credentials.createInsecure();
  const ns = new NamespacesClient(address, creds);
  const images = new ImagesClient(address, creds);
  const containers = new ContainersClient(address, creds);
  const leases = new LeasesClient(address, creds);
  const p = <T>(f: (cb: (e: grpc.ServiceError | null, r?: T) => void) => void): Promise<T | undefined> =>
    new Promise((res, rej) => f((e, r) => (e ? rej(e) : res(r))));
  try {
    const parts = await Promise.all([
      p((cb) => ns.get({ name: 'keep' }, md, cb)),
      p((cb) => images.list({ filters: [] }, md, cb)),
      p((cb) => containers.list({ filters: [] }, md, cb)),
      p((cb) => leases.list({ filters: [] }, md, cb)),
    ]);
    return JSON.stringify(parts, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  } finally {
    for (const c of [ns, images, containers, leases]) c.close();
  }
}

describe('fuzz: every gRPC method of a running berthd', () => {
  let d: BerthdProcess;
  let before: string;
  let snapshotsBefore: string;
  let contentBefore: string;

  beforeAll(async () => {
    // The fuzzer's deletes would let the collector take the unleased `keep` blob (as on containerd): what this
    // checks is that mutated calls leave other data alone, so collections run only when asked.
    d = await startBerthd({ config: { gc: { automatic: false } } });
    const run = async (args: string[], input?: string): Promise<void> => {
      const r = await ctr(d.socket, ['--namespace', 'keep', ...args], input === undefined ? {} : { input });
      if (r.code !== 0) throw new Error(`ctr ${args.join(' ')}: ${r.stderr}`);
    };
    await run(['namespaces', 'create', 'keep', 'owner=fuzz-test']);
    await run(['content', 'ingest', 'keep-blob'], 'keep me');
    await run(['leases', 'create', '--id', 'keep-lease']);
    await run(['snapshots', 'prepare', 'keep-snap']);
    await run(['containers', 'create', '--snapshotter', 'overlayfs', 'keep-image:1', 'keep-ctr']).catch(
      () => undefined,
    );
    const md = new grpc.Metadata();
    md.set('containerd-namespace', 'keep');
    const images = new ImagesClient(`unix://${d.socket}`, grpc.credentials.createInsecure());
    await new Promise<void>((res, rej) =>
      images.create(
        {
          image: {
            name: 'keep/image:1',
            labels: { k: 'v' },
            target: {
              mediaType: 'application/vnd.oci.image.index.v1+json',
              digest: `sha256:${'e'.repeat(64)}`,
              size: 1,
              annotations: {},
            },
          },
        },
        md,
        (e) => (e ? rej(e) : res()),
      ),
    );
    images.close();
    before = await fingerprint(`unix://${d.socket}`);
    snapshotsBefore = (await ctr(d.socket, ['--namespace', 'keep', 'snapshots', 'ls'])).stdout;
    contentBefore = (await ctr(d.socket, ['--namespace', 'keep', 'content', 'ls', '-q'])).stdout;
  });
  afterAll(async () => {
    await d?.stop();
  });

  it('answers every mutated call with a status, without stack traces, staying up, leaving other data alone', async () => {
    const runs = runsFor('wire', 3_000);
    const r = rng(seedFor());
    const all = methods();
    const pool = all.flatMap((m) => m.seeds);
    const client = new grpc.Client(`unix://${d.socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_send_message_length': -1,
    });
    const codes: Record<string, number> = {};
    const perMethod = new Map<string, number>();
    const findings: string[] = [];
    const unknowns = new Map<string, number>();
    let sent = 0;
    let undecodable = 0;
    const concurrency = 16;
    const worker = async (): Promise<void> => {
      while (sent < runs) {
        sent++;
        // Every method once first, then at random.
        const m = all[sent - 1] ?? pick(r, all);
        const msgs = m.seeds.map((s) => {
          const x = r();
          if (x < 0.1) return s; // the valid request itself, among the mutants
          if (x < 0.2) return s.subarray(0, int(r, s.length + 1)); // truncated
          // Mostly mutants that still decode, so the handlers (not only the decoder) see them.
          let b = mutate(r, s, pool, 3);
          for (let t = 0; t < 8 && r() < 0.85 && !m.decodes(b); t++) b = mutate(r, s, pool, 3);
          return b;
        });
        const send = m.requestStream && r() < 0.3 ? msgs.slice(0, int(r, msgs.length + 1)) : msgs;
        const o = await callOnce(client, m, send, headers(r));
        const name = grpc.status[o.code] ?? String(o.code);
        codes[name] = (codes[name] ?? 0) + 1;
        perMethod.set(`${m.service}/${m.name}`, (perMethod.get(`${m.service}/${m.name}`) ?? 0) + 1);
        if (stackTrace.test(o.details)) findings.push(`${m.path}: stack trace in status: ${o.details.slice(0, 300)}`);
        if (o.code === grpc.status.DEADLINE_EXCEEDED && !endless.test(m.name))
          findings.push(`${m.path}: no status before the deadline (hang)`);
        // Bytes that are no protobuf message: grpc-js answers INTERNAL "Error deserializing request", as grpc-go
        // (and so containerd) answers INTERNAL "grpc: error unmarshalling request".
        if (o.code === grpc.status.INTERNAL && o.details === 'Error deserializing request') undecodable++;
        else if (o.code === grpc.status.UNKNOWN || o.code === grpc.status.INTERNAL) {
          const key = `${m.path} ${name}: ${o.details.replace(/[0-9a-f]{64}/g, '<hex>').slice(0, 160)}`;
          unknowns.set(key, (unknowns.get(key) ?? 0) + 1);
        }
        if (sent % 10_000 === 0) report('wire progress', { calls: sent, ...codes });
        if (d.child.exitCode !== null)
          throw new Error(`berthd exited (${d.child.exitCode}):\n${d.logs().slice(-4000)}`);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    client.close();

    report('wire', { calls: sent, methods: perMethod.size, undecodable, ...codes });
    for (const [k, n] of unknowns) process.stdout.write(`fuzz wire unknown/internal x${n}: ${k}\n`);
    const version = new VersionClient(`unix://${d.socket}`, grpc.credentials.createInsecure());
    const v = await new Promise<string>((res, rej) =>
      version.version({}, (e, x) => (e ? rej(e) : res(x?.version ?? ''))),
    );
    version.close();
    expect(v).toMatch(/berth/);
    expect(await fingerprint(`unix://${d.socket}`)).toBe(before);
    expect((await ctr(d.socket, ['--namespace', 'keep', 'snapshots', 'ls'])).stdout).toBe(snapshotsBefore);
    expect((await ctr(d.socket, ['--namespace', 'keep', 'content', 'ls', '-q'])).stdout).toBe(contentBefore);

    expect(perMethod.size).toBe(Math.min(all.length, runs));
    expect(findings, findings.slice(0, 20).join('\n')).toEqual([]);
  });
});
