#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { readConfigFile } from '@berth/common/config';
import { onShutdownSignal } from '@berth/common/lifecycle';
import { createLogger } from '@berth/common/log';
import { type BerthServiceName, berthServiceNames } from '@berth/gateway';
import { type Role, startNode } from './compose.js';
import { loadConfig } from './config.js';
import { migrateAll } from './migrate.js';

const usage = `usage:
  berthd [--root DIR] [--state DIR] [--address SOCKET] [--postgres URL] [--nats URL] [--http HOST:PORT] [--config FILE]
      all services in one process (PGlite and in-process events unless --postgres / --nats)
  berthd serve node --config FILE [--node NAME] [--root DIR] [--state DIR] [--address SOCKET]
      a cluster node: its socket's gateway plus snapshots, diff and tasks; the cluster services at their addresses
  berthd serve <gateway|${berthServiceNames.join('|')}> --config FILE [--address ADDR]
      one service alone (cluster mode)
  berthd migrate --postgres URL
      apply every service's database migrations, then exit (a deploy step before the services start)`;

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      node: { type: 'string' },
      root: { type: 'string' },
      state: { type: 'string' },
      address: { type: 'string', short: 'a' },
      postgres: { type: 'string' },
      nats: { type: 'string' },
      http: { type: 'string' },
      config: { type: 'string', short: 'c' },
      'log-level': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return;
  }
  const { config: configFile, help: _help, ...flags } = values;
  const file = await readConfigFile(configFile ?? process.env['BERTH_CONFIG']);
  const cfg = loadConfig({ flags, env: process.env, file });
  const log = createLogger({ level: cfg.logLevel, fields: { pid: process.pid } });
  if (positionals[0] === 'migrate') {
    if (positionals.length > 1) throw new Error(`bad arguments\n${usage}`);
    if (!cfg.postgres)
      throw new Error('migrate needs --postgres (or BERTH_POSTGRES): the embedded database migrates itself');
    log.info('migrated', { applied: await migrateAll(cfg.postgres) });
    return;
  }
  let role: Role = { kind: 'all' };
  if (positionals.length > 0) {
    const [verb, service] = positionals;
    if (verb !== 'serve' || !service || !(service === 'node' || isServeTarget(service))) {
      throw new Error(`bad arguments\n${usage}`);
    }
    role = service === 'node' ? { kind: 'node' } : { kind: 'serve', service };
  }
  // Handlers first: the socket accepts calls before startNode returns, and a SIGTERM in that window must
  // still shut down cleanly rather than kill the process with its socket left behind.
  const starting = startNode(cfg, role, log);
  onShutdownSignal(async (signal) => {
    log.info('shutting down', { signal });
    const node = await starting.catch(() => undefined);
    await node?.close();
  });
  await starting;
}

function isServeTarget(s: string): s is BerthServiceName | 'gateway' {
  return s === 'gateway' || (berthServiceNames as string[]).includes(s);
}

main().catch((e: unknown) => {
  process.stderr.write(`berthd: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
