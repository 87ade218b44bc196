import { hostname } from 'node:os';
import { join } from 'node:path';
import { ConfigReader, type ConfigSources, urlSecrets } from '@berth/common/config';
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
   * On a node, where it serves its snapshots' `berth.internal.v1.Collectable` alone, for a remote collector.
   */
  readonly listen: string | undefined;
  /**
   * Postgres URL; unset means PGlite under <root>/db. Like every secret (`nats`, `content.s3.access-key`,
   * `content.s3.secret-key`) it may come from a file, `postgres-file` / BERTH_POSTGRES_FILE; a flag with a
   * password in it is refused.
   */
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
   * How long an internal stream (a layer's content → decompressor → tar chain, a Content.Write ingest, a response
   * stream whose client stopped reading) may make no progress, and a task supervisor may leave a call unanswered,
   * before the call fails with deadline_exceeded naming the stage (`stall-timeout-ms`, default 60000).
   */
  readonly stallTimeoutMs: number;
  /**
   * Unpack-ahead (`unpack.ahead`, default true; `unpack.ahead-concurrency`, default 2): while a client applies
   * one layer of an image, the layers above it are extracted beside it, and each Apply then takes its layer's
   * tree by rename (overlayfs only). See services/diff/src/ahead/unpack-ahead.ts.
   */
  readonly unpack: { readonly ahead: boolean; readonly aheadConcurrency: number };
  /** The garbage collector: containerd's scheduler knobs (`gc.pause-threshold`, …) and the backend sweeps. */
  readonly gc: GcConfig;
  /**
   * Mutual TLS for gRPC over TCP (`tls.ca`, `tls.cert`, `tls.key`: PEM files; `tls.refresh-seconds`, default
   * 60: how often they are re-read). Unset: TCP is plaintext. Unix sockets are always plaintext.
   */
  readonly tls:
    | { readonly ca: string; readonly cert: string; readonly key: string; readonly refreshSeconds: number }
    | undefined;
  /** Per service: the address it listens on when served alone, which the gateway forwards to. */
  readonly services: Readonly<Record<BerthServiceName, { readonly address: string | undefined }>>;
  /** The secret values read (passwords, tokens, keys): what logs and error output must mask. */
  readonly secrets: readonly string[];
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

export interface GcConfig {
  /** `gc.pause-threshold` (default 0.02), `gc.deletion-threshold` (0), `gc.mutation-threshold` (100),
   * `gc.schedule-delay-ms` (0), `gc.startup-delay-ms` (100): containerd's `io.containerd.gc.v1.scheduler`. */
  readonly pauseThreshold: number;
  readonly deletionThreshold: number;
  readonly mutationThreshold: number;
  readonly scheduleDelayMs: number;
  readonly startupDelayMs: number;
  /** `gc.idle-interval-ms`: a collection runs at least this often, so expired leases go on an idle node. Default 30000. */
  readonly idleIntervalMs: number;
  /** `gc.automatic` (default true): false collects only when asked (sync deletes, `berth gc`), never on its own. */
  readonly automatic: boolean;
  /** `gc.content-grace-seconds`: an S3 object with no record is deleted only once this old. Default 7200 (fs: 0). */
  readonly contentGraceSeconds: number;
  /** `gc.delete-timeout-ms`: each backend delete gives up after this and is counted as failed. Default 30000. */
  readonly deleteTimeoutMs: number;
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
    postgres: r.secret('postgres', urlSecrets),
    nats: r.secret('nats', urlSecrets),
    http: r.optional('http'),
    logLevel: r.oneOf('log-level', ['debug', 'info', 'warn', 'error', 'silent'] as const, 'info'),
    events: { maxAgeSeconds: r.int('events.max-age-seconds', 86_400), maxEvents: r.int('events.max-events', 0) },
    content: {
      backend: r.oneOf('content.backend', ['fs', 's3'] as const, 'fs'),
      s3: {
        endpoint: r.optional('content.s3.endpoint'),
        bucket: r.str('content.s3.bucket', 'berth'),
        accessKey: r.secret('content.s3.access-key') ?? '',
        secretKey: r.secret('content.s3.secret-key') ?? '',
        region: r.str('content.s3.region', 'us-east-1'),
        prefix: r.str('content.s3.prefix', ''),
        partSize: r.int('content.s3.part-size', 16 * 1024 * 1024),
      },
    },
    stallTimeoutMs: r.int('stall-timeout-ms', 60_000),
    unpack: { ahead: r.bool('unpack.ahead', true), aheadConcurrency: r.int('unpack.ahead-concurrency', 2) },
    gc: {
      pauseThreshold: Number(r.str('gc.pause-threshold', '0.02')),
      deletionThreshold: r.int('gc.deletion-threshold', 0),
      mutationThreshold: r.int('gc.mutation-threshold', 100),
      scheduleDelayMs: r.int('gc.schedule-delay-ms', 0),
      startupDelayMs: r.int('gc.startup-delay-ms', 100),
      idleIntervalMs: r.int('gc.idle-interval-ms', 30_000),
      automatic: r.bool('gc.automatic', true),
      contentGraceSeconds: r.int('gc.content-grace-seconds', 7_200),
      deleteTimeoutMs: r.int('gc.delete-timeout-ms', 30_000),
    },
    tls: tlsConfig(r),
    services,
    secrets: [],
  };
  if (cfg.stallTimeoutMs <= 0) r.problem(`stall-timeout-ms: ${cfg.stallTimeoutMs} must be positive`);
  if (cfg.unpack.aheadConcurrency < 1)
    r.problem(`unpack.ahead-concurrency: ${cfg.unpack.aheadConcurrency} must be at least 1`);
  if (!Number.isFinite(cfg.gc.pauseThreshold)) r.problem('gc.pause-threshold: not a number');
  r.throwIfInvalid();
  return Object.freeze({ ...cfg, secrets: r.secrets() });
}

function tlsConfig(r: ConfigReader): BerthdConfig['tls'] {
  const ca = r.optional('tls.ca');
  const cert = r.optional('tls.cert');
  const key = r.optional('tls.key');
  if (ca === undefined && cert === undefined && key === undefined) return undefined;
  if (ca === undefined || cert === undefined || key === undefined) {
    r.problem('tls: tls.ca, tls.cert and tls.key go together (each a PEM file)');
    return undefined;
  }
  const refreshSeconds = r.int('tls.refresh-seconds', 60);
  if (refreshSeconds < 1) r.problem('tls.refresh-seconds must be at least 1');
  return { ca, cert, key, refreshSeconds };
}
