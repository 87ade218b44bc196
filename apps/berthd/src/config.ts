import { hostname } from 'node:os';
import { join } from 'node:path';
import { ConfigReader, type ConfigSources } from '@berth/common/config';
import type { LogLevel } from '@berth/common/log';
import { type BerthServiceName, berthServiceNames } from '@berth/gateway';

/** Everything berthd needs, resolved from flags, BERTH_* environment variables, a JSON file and defaults. */
export interface BerthdConfig {
  /** This node's name in the cluster (`--node`, default the host name): what its events and records say. */
  readonly node: string;
  /** Persistent data (embedded database, blobs, snapshots). Default /var/lib/berth. */
  readonly root: string;
  /** Runtime state (sockets, bundles). Default /run/berth. */
  readonly state: string;
  /** The node socket ctr talks to. Default <state>/berth.sock. */
  readonly address: string;
  /**
   * Where a process serving one cluster service alone listens (`--listen`): needed when `<service>.address`
   * lists several replicas; by default that address itself, or `0.0.0.0:<port>` for a `dns:///name:port` one.
   */
  readonly listen: string | undefined;
  /** Postgres URL; unset means PGlite under <root>/db. */
  readonly postgres: string | undefined;
  /** NATS URL; unset means the in-process bus. */
  readonly nats: string | undefined;
  /** Ops HTTP (health, metrics) listen address, e.g. 127.0.0.1:9345; unset disables it. */
  readonly http: string | undefined;
  readonly logLevel: LogLevel;
  /** Event stream retention (`events.max-age-seconds`, default 86400; `events.max-events`, 0 = the bus default). */
  readonly events: { readonly maxAgeSeconds: number; readonly maxEvents: number };
  /** Where content keeps blob bytes: `content.backend` fs (default, under <root>/content) or s3 (`content.s3.*`). */
  readonly content: ContentConfig;
  /**
   * How long an internal stream (a layer's content → decompressor → tar chain, a Content.Write ingest) may make
   * no progress before its call fails with deadline_exceeded naming the stage (`stall-timeout-ms`, default 60000).
   */
  readonly stallTimeoutMs: number;
  /** Per service: the address it listens on when served alone, which the gateway forwards to. */
  readonly services: Readonly<Record<BerthServiceName, { readonly address: string | undefined }>>;
}

export interface ContentConfig {
  readonly backend: 'fs' | 's3';
  /** `content.s3.endpoint` (http(s)://host:port), `.bucket` (default berth), `.access-key`, `.secret-key`,
   * `.region` (default us-east-1), `.prefix` (key prefix, default empty), `.part-size` (bytes, default 16 MiB). */
  readonly s3: {
    readonly endpoint: string | undefined;
    readonly bucket: string;
    readonly accessKey: string;
    readonly secretKey: string;
    readonly region: string;
    readonly prefix: string;
    readonly partSize: number;
  };
}

export function loadConfig(sources: ConfigSources): BerthdConfig {
  const r = new ConfigReader(sources);
  const root = r.str('root', '/var/lib/berth');
  const state = r.str('state', '/run/berth');
  const services = Object.fromEntries(
    berthServiceNames.map((name) => [name, { address: r.optional(`${name}.address`) }]),
  ) as Record<BerthServiceName, { address: string | undefined }>;
  const node = r.str('node', hostname());
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(node))
    r.problem(`node: ${JSON.stringify(node)} is not a valid node name`);
  const cfg: BerthdConfig = {
    node,
    root,
    state,
    address: r.str('address', join(state, 'berth.sock')),
    listen: r.optional('listen'),
    postgres: r.optional('postgres'),
    nats: r.optional('nats'),
    http: r.optional('http'),
    logLevel: r.oneOf('log-level', ['debug', 'info', 'warn', 'error', 'silent'] as const, 'info'),
    events: { maxAgeSeconds: r.int('events.max-age-seconds', 86_400), maxEvents: r.int('events.max-events', 0) },
    content: {
      backend: r.oneOf('content.backend', ['fs', 's3'] as const, 'fs'),
      s3: {
        endpoint: r.optional('content.s3.endpoint'),
        bucket: r.str('content.s3.bucket', 'berth'),
        accessKey: r.str('content.s3.access-key', ''),
        secretKey: r.str('content.s3.secret-key', ''),
        region: r.str('content.s3.region', 'us-east-1'),
        prefix: r.str('content.s3.prefix', ''),
        partSize: r.int('content.s3.part-size', 16 * 1024 * 1024),
      },
    },
    stallTimeoutMs: r.int('stall-timeout-ms', 60_000),
    services,
  };
  if (cfg.stallTimeoutMs <= 0) r.problem(`stall-timeout-ms: ${cfg.stallTimeoutMs} must be positive`);
  r.throwIfInvalid();
  return Object.freeze(cfg);
}
