#!/usr/bin/env -S node --max-semi-space-size=2 --initial-old-space-size=96
import { parseArgs } from 'node:util';
import { readConfigFile } from '@berth/common/config';
import { onShutdownSignal } from '@berth/common/lifecycle';
import { createLogger } from '@berth/common/log';
import { type Redact, redactor, redactUrls } from '@berth/common/redact';
import { clusterTls, useClusterTls } from '@berth/common/tls/credentials';
import { type BerthServiceName, berthServiceNames } from '@berth/gateway';
import { type Role, startNode } from './compose.js';
import { loadConfig } from './config.js';
import { returnMemoryWhenIdle } from './idle-memory.js';
import { tuneMalloc } from './malloc.js';
import { migrateAll } from './migrate.js';

const usage = `usage:
  berthd [--root DIR] [--state DIR] [--address SOCKET] [--postgres-file FILE] [--nats-file FILE] [--http HOST:PORT] [--config FILE]
      all services in one process (PGlite and in-process events unless --postgres / --nats)
  berthd serve node --config FILE [--node NAME] [--root DIR] [--state DIR] [--address SOCKET] [--listen ADDR]
      a cluster node: its socket's gateway plus snapshots, diff and tasks; the cluster services at their addresses;
      --listen serves the node's collectable snapshots alone there, for a collector on another host
  berthd serve <gateway|${berthServiceNames.join('|')}> --config FILE [--listen ADDR]
      one service alone (cluster mode); --listen is this replica's address when <service>.address lists several
  berthd migrate --config FILE | --postgres-file FILE
      apply every service's database migrations, then exit (a deploy step before the services start)
  berthd certs --dir DIR --name NAME [--name NAME…] [--host HOST…] [--days N]
      a cluster CA (reused if DIR has one) and a certificate per service or node, for tls.ca / tls.cert / tls.key`;

async function certs(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      dir: { type: 'string' },
      name: { type: 'string', multiple: true },
      host: { type: 'string', multiple: true },
      days: { type: 'string' },
    },
  });
  if (!values.dir || !values.name?.length) throw new Error(`certs needs --dir and at least one --name\n${usage}`);
  const days = values.days === undefined ? undefined : Number(values.days);
  if (days !== undefined && !(Number.isInteger(days) && days > 0))
    throw new Error('certs: --days must be a positive integer');
  // Loaded here: node-forge (X.509) costs the daemon 1.3 MB of heap it never uses.
  const { makeCerts } = await import('./certs.js');
  const written = await makeCerts({
    dir: values.dir,
    names: values.name,
    ...(values.host ? { hosts: values.host } : {}),
    ...(days ? { days } : {}),
  });
  for (const f of written) process.stdout.write(`${f}\n`);
}

async function main(): Promise<void> {
  const malloc = tuneMalloc();
  if (process.argv[2] === 'certs') return certs(process.argv.slice(3));
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      node: { type: 'string' },
      root: { type: 'string' },
      state: { type: 'string' },
      address: { type: 'string', short: 'a' },
      listen: { type: 'string' },
      postgres: { type: 'string' },
      'postgres-file': { type: 'string' },
      nats: { type: 'string' },
      'nats-file': { type: 'string' },
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
  const redact = redactor(cfg.secrets);
  errorRedact = redact;
  const log = createLogger({ level: cfg.logLevel, fields: { pid: process.pid }, redact });
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
  // Process-wide: every TCP listener and service-to-service client of this process uses the cluster identity.
  if (cfg.tls) useClusterTls(clusterTls(cfg.tls, { log, refreshMs: cfg.tls.refreshSeconds * 1000 }));
  // Handlers first: the socket accepts calls before startNode returns, and a SIGTERM in that window must
  // still shut down cleanly rather than kill the process with its socket left behind.
  const starting = startNode(cfg, role, log);
  onShutdownSignal(async (signal) => {
    log.info('shutting down', { signal });
    const node = await starting.catch(() => undefined);
    await node?.close();
  });
  await starting;
  returnMemoryWhenIdle(malloc ? { malloc } : {});
}

function isServeTarget(s: string): s is BerthServiceName | 'gateway' {
  return s === 'gateway' || (berthServiceNames as string[]).includes(s);
}

/** Masks secrets in a fatal error (a driver may quote the URL it failed on). */
let errorRedact: Redact = redactUrls;

main().catch((e: unknown) => {
  process.stderr.write(`berthd: ${errorRedact(e instanceof Error ? e.message : String(e))}\n`);
  process.exit(1);
});
