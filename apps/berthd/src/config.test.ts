import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dialTarget } from '@berth/common/grpc-client';
import { createLogger } from '@berth/common/log';
import { describe, expect, it } from 'vitest';
import { serviceListenAddress, startNode } from './compose.js';
import { loadConfig } from './config.js';

describe('berthd config: the node name', () => {
  it('unpack-ahead is on by default; BERTH_UNPACK_AHEAD=false or a flag turns it off; its concurrency is checked', () => {
    expect(loadConfig({ env: {} }).unpack).toEqual({ ahead: true, aheadConcurrency: 2 });
    expect(loadConfig({ env: { BERTH_UNPACK_AHEAD: 'false' } }).unpack.ahead).toBe(false);
    expect(loadConfig({ flags: { 'unpack.ahead': 'false' }, env: {} }).unpack.ahead).toBe(false);
    expect(() => loadConfig({ flags: { 'unpack.ahead-concurrency': '0' }, env: {} })).toThrow(
      /unpack.ahead-concurrency: 0 must be at least 1/,
    );
  });

  it('defaults to the host name, and a flag or BERTH_NODE sets it', () => {
    expect(loadConfig({}).node).toBe(hostname());
    expect(loadConfig({ env: { BERTH_NODE: 'node-b' } }).node).toBe('node-b');
    expect(loadConfig({ flags: { node: 'node-a' }, env: { BERTH_NODE: 'node-b' } }).node).toBe('node-a');
  });

  it('refuses a name that cannot label events and records', () => {
    expect(() => loadConfig({ flags: { node: 'bad/name' } })).toThrow(/node: "bad\/name" is not a valid node name/);
    expect(() => loadConfig({ flags: { node: '' } })).toThrow(/not a valid node name/);
  });
});

describe('berthd serve node', () => {
  it('refuses to start without the addresses of the cluster services it forwards to', async () => {
    const cfg = loadConfig({ flags: { root: '/nonexistent/root', state: '/nonexistent/state' } });
    await expect(startNode(cfg, { kind: 'node' }, createLogger({ level: 'silent' }))).rejects.toThrow(
      /serve node needs the addresses of metadata, content, events/,
    );
  });
});

describe('the example cluster.json', () => {
  const file = JSON.parse(readFileSync(join(fileURLToPath(import.meta.url), '../../../../cluster.json'), 'utf8'));

  it('configures a node: the cluster services at replica lists or DNS names, content on S3', () => {
    const cfg = loadConfig({ flags: { node: 'node-b' }, file });
    expect(cfg.node).toBe('node-b');
    expect(cfg.content.backend).toBe('s3');
    expect(dialTarget(cfg.services.content.address ?? '')).toBe('ipv4:10.0.0.11:7001,10.0.0.12:7001');
    expect(dialTarget(cfg.services.metadata.address ?? '')).toBe('dns:///metadata.berth.internal:7002');
    expect(dialTarget(cfg.services.events.address ?? '')).toBe('10.0.0.13:7003');
  });

  it('serves a replica on --listen, or on every interface at the port of its DNS name', () => {
    expect(() => serviceListenAddress(loadConfig({ file }), 'content')).toThrow(/lists several replicas.*--listen/);
    expect(serviceListenAddress(loadConfig({ file, flags: { listen: '10.0.0.12:7001' } }), 'content')).toBe(
      '10.0.0.12:7001',
    );
    expect(serviceListenAddress(loadConfig({ file }), 'metadata')).toBe('0.0.0.0:7002');
    expect(serviceListenAddress(loadConfig({ file }), 'events')).toBe('10.0.0.13:7003');
  });
});
