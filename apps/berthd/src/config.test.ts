import { hostname } from 'node:os';
import { createLogger } from '@berth/common/log';
import { describe, expect, it } from 'vitest';
import { startNode } from './compose.js';
import { loadConfig } from './config.js';

describe('berthd config: the node name', () => {
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
