import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startNatsServer } from '@berth/testing/nats';
import { freePort } from '@berth/testing/ports';
import { usePostgres } from '@berth/testing/postgres';
import { type TestS3, useS3 } from '@berth/testing/s3';
import { type BerthdProcess, startBerthd } from './berthd.js';

export interface ClusterOptions {
  /** Node names, each a `serve node` process with its own root, state and socket. Default a, b, c. */
  readonly nodes?: readonly string[];
  /** Replicas of content and of metadata. Default 2. */
  readonly replicas?: number;
  /** Node.js flags for every process (e.g. `--cpu-prof`). */
  readonly nodeArgs?: readonly string[];
}

export interface Cluster {
  /** The config file every process reads (as an object); only `--node` differs between nodes. */
  readonly config: Readonly<Record<string, unknown>>;
  readonly s3: TestS3;
  /** `content-1`, `content-2`, `metadata-1`, …, `events`, `gc-1`, `gc-2`. */
  readonly replicas: ReadonlyMap<string, BerthdProcess>;
  readonly nodes: ReadonlyMap<string, BerthdProcess>;
  /** The socket ctr talks to on `node`. */
  socket(node: string): string;
  /** Node `name`'s root directory (its snapshots live under it). */
  root(node: string): string;
  /** Starts node `name` (again, after a kill: same root and state). */
  startNode(name: string): Promise<BerthdProcess>;
  stop(): Promise<void>;
}

/**
 * A Berth cluster on one machine, every part its own process: Postgres (a fresh database), a private NATS
 * JetStream, an S3 server, N replicas each of content and metadata, one events service and two collectors
 * (`serve gc`, one leads), each on its own loopback address (127.0.0.2…), and the nodes (`serve node`:
 * gateway, snapshots, diff, tasks; each also serves its collectable snapshots on its own loopback address).
 */
export async function startCluster(opts: ClusterOptions = {}): Promise<Cluster> {
  const replicaCount = opts.replicas ?? 2;
  const [pg, nats, s3] = await Promise.all([usePostgres(), startNatsServer(), useS3()]);
  const dir = await mkdtemp(join(tmpdir(), 'berth-cluster-'));
  const replicas = new Map<string, BerthdProcess>();
  const nodes = new Map<string, BerthdProcess>();
  const stopAll = async (): Promise<void> => {
    for (const p of nodes.values()) await p.stop();
    for (const p of [...replicas.values()].reverse()) await p.stop();
    await rm(dir, { recursive: true, force: true });
    await Promise.all([pg.drop(), nats.dispose(), s3.stop()]);
  };
  try {
    const [contentPort, metadataPort, eventsPort, gcPort, collectablePort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    let host = 2;
    const hosts = (n: number): number[] => Array.from({ length: n }, () => host++);
    const contentHosts = hosts(replicaCount);
    const metadataHosts = hosts(replicaCount);
    const [eventsHost] = hosts(1);
    const gcHosts = hosts(2);
    const nodeNames = opts.nodes ?? ['a', 'b', 'c'];
    const nodeHosts = new Map(nodeNames.map((n) => [n, host++]));
    const at = (h: number | undefined, port: number): string => `127.0.0.${h}:${port}`;
    const config = {
      postgres: pg.url,
      nats: nats.url,
      metadata: { address: metadataHosts.map((h) => at(h, metadataPort)).join(',') },
      content: {
        address: contentHosts.map((h) => at(h, contentPort)).join(','),
        backend: 's3',
        s3: {
          endpoint: `http://${s3.endPoint}:${s3.port}`,
          bucket: s3.bucket,
          'access-key': s3.accessKey,
          'secret-key': s3.secretKey,
          region: s3.region,
          // One PUT per staged part where the server has no multipart uploads (s3rver).
          'part-size': s3.supportsMultipart ? 16 * 1024 * 1024 : 256 * 1024 * 1024,
        },
      },
      events: { address: at(eventsHost, eventsPort) },
      gc: {
        address: gcHosts.map((h) => at(h, gcPort)).join(','),
        // An S3 object with no record goes this long after the collection that removed the record.
        'content-grace-seconds': 3,
      },
    };
    // The collectors alone also know where the nodes serve their collectable snapshots (a node given a
    // snapshots address would use it instead of its own).
    const gcConfig = {
      ...config,
      snapshots: { address: [...nodeHosts.values()].map((h) => at(h, collectablePort)).join(',') },
    };
    const serve = async (name: string, service: string, listen: string): Promise<void> => {
      await mkdir(join(dir, name));
      replicas.set(
        name,
        await startBerthd({
          role: ['serve', service],
          ...(opts.nodeArgs ? { nodeArgs: opts.nodeArgs } : {}),
          config: service === 'gc' ? gcConfig : config,
          dir: join(dir, name),
          socket: listen,
          args: ['--listen', listen],
        }),
      );
    };
    // The first metadata replica alone: it creates the namespaces the others' migrations do not wait for.
    await serve('metadata-1', 'metadata', at(metadataHosts[0], metadataPort));
    await Promise.all([
      ...metadataHosts.slice(1).map((h, i) => serve(`metadata-${i + 2}`, 'metadata', at(h, metadataPort))),
      ...contentHosts.map((h, i) => serve(`content-${i + 1}`, 'content', at(h, contentPort))),
      serve('events', 'events', at(eventsHost, eventsPort)),
    ]);
    const socket = (name: string): string => join(dir, `node-${name}`, 'berth.sock');
    const root = (name: string): string => join(dir, `node-${name}`, 'root');
    const startNode = async (name: string): Promise<BerthdProcess> => {
      const nodeDir = join(dir, `node-${name}`);
      await mkdir(nodeDir, { recursive: true });
      const p = await startBerthd({
        role: ['serve', 'node'],
        ...(opts.nodeArgs ? { nodeArgs: opts.nodeArgs } : {}),
        config,
        dir: nodeDir,
        socket: socket(name),
        args: ['--node', name, '--listen', at(nodeHosts.get(name), collectablePort)],
      });
      nodes.set(name, p);
      return p;
    };
    for (const name of nodeNames) await startNode(name);
    await Promise.all(gcHosts.map((h, i) => serve(`gc-${i + 1}`, 'gc', at(h, gcPort))));
    return { config, s3, replicas, nodes, socket, root, startNode, stop: stopAll };
  } catch (e) {
    await stopAll().catch(() => undefined);
    throw e;
  }
}
