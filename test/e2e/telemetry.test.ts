import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr } from './src/ctr.js';

interface SpanLine {
  name: string;
  kind: number;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  service: string;
}

const SERVER = 1;
const CLIENT = 2;

async function spans(file: string): Promise<SpanLine[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as SpanLine);
}

describe('OpenTelemetry traces across the gateway hop', () => {
  let dir: string;
  let metadata: BerthdProcess;
  let gateway: BerthdProcess;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-otel-'));
    const config = { metadata: { address: `unix://${join(dir, 'metadata.sock')}` } };
    metadata = await startBerthd({
      role: ['serve', 'metadata'],
      config,
      dir,
      socket: join(dir, 'metadata.sock'),
      env: { BERTH_TRACE_FILE: join(dir, 'metadata.spans') },
    });
    gateway = await startBerthd({
      role: ['serve', 'gateway'],
      config,
      dir,
      socket: join(dir, 'gateway.sock'),
      env: { BERTH_TRACE_FILE: join(dir, 'gateway.spans') },
    });
  });

  afterAll(async () => {
    await gateway?.stop();
    await metadata?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('one trace spans ctr → gateway → metadata', async () => {
    const r = await ctr(gateway.socket, ['namespaces', 'create', 'traced']);
    expect(r.code, r.stderr).toBe(0);
    const method = 'grpc.containerd.services.namespaces.v1.Namespaces/Create';
    let gw: SpanLine[] = [];
    let md: SpanLine[] = [];
    for (let i = 0; i < 50 && (md.length === 0 || gw.length < 2); i++) {
      gw = (await spans(join(dir, 'gateway.spans'))).filter((s) => s.name === method);
      md = (await spans(join(dir, 'metadata.spans'))).filter((s) => s.name === method);
      await new Promise((res) => setTimeout(res, 100));
    }
    const gwServer = gw.find((s) => s.kind === SERVER);
    const gwClient = gw.find((s) => s.kind === CLIENT);
    const mdServer = md.find((s) => s.kind === SERVER);
    expect(gwServer?.service).toBe('berth-gateway');
    expect(mdServer?.service).toBe('berth-metadata');
    expect(gwClient?.parentSpanId).toBe(gwServer?.spanId);
    expect(mdServer?.traceId).toBe(gwServer?.traceId);
    expect(mdServer?.parentSpanId).toBe(gwClient?.spanId);
  });
});
