import type { Db } from '@berth/common/db';
import { createInProcessBus, type EventBus, type StoredEvent } from '@berth/common/event-bus';
import { channelOptions, invoke } from '@berth/common/grpc-client';
import { type BoundServer, createServer, listen } from '@berth/common/grpc-server';
import { nopLogger } from '@berth/common/log';
import { registerAll } from '@berth/common/service';
import { ContainersClient } from '@berth/proto/containerd/services/containers/v1/containers';
import { ImagesClient } from '@berth/proto/containerd/services/images/v1/images';
import { LeasesClient } from '@berth/proto/containerd/services/leases/v1/leases';
import { NamespacesClient } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import { type TempDir, tempDir } from '@berth/testing/tmp';
import * as grpc from '@grpc/grpc-js';
import { createMetadataModule, type MetadataDeps, type MetadataModule } from '../src/index.js';

type Start<Res> = (
  md: grpc.Metadata,
  opts: Partial<grpc.CallOptions>,
  cb: (err: grpc.ServiceError | null, res?: Res) => void,
) => grpc.ClientUnaryCall;

/** The four services of a metadata module served on a private unix socket, called through generated clients. */
export interface Harness {
  readonly module: MetadataModule;
  readonly bus: EventBus;
  readonly images: ImagesClient;
  readonly containers: ContainersClient;
  readonly leases: LeasesClient;
  readonly namespaces: NamespacesClient;
  /** One unary call in namespace `ns` (no namespace header when undefined); failures are ServiceErrors. */
  call<Res>(ns: string | undefined, start: Start<Res>): Promise<Res>;
  /** The events published so far, after the outbox is drained. */
  events(): Promise<StoredEvent[]>;
  close(): Promise<void>;
}

/** `bus` defaults to an in-process bus, which the harness closes; a given bus stays the caller's. */
export async function startHarness(
  db: Db,
  extra: Partial<Omit<MetadataDeps, 'bus'>> & { readonly bus?: EventBus } = {},
): Promise<Harness> {
  const bus = extra.bus ?? createInProcessBus();
  const ownBus = extra.bus === undefined;
  const module = await createMetadataModule({ log: nopLogger, ...extra, db, bus });
  const dir: TempDir = tempDir('berth-metadata-');
  const server = createServer();
  registerAll(server, [module]);
  const bound: BoundServer = await listen(server, `${dir.path}/m.sock`);
  const creds = grpc.credentials.createInsecure();
  const images = new ImagesClient(bound.address, creds, channelOptions);
  const containers = new ContainersClient(bound.address, creds, channelOptions);
  const leases = new LeasesClient(bound.address, creds, channelOptions);
  const namespaces = new NamespacesClient(bound.address, creds, channelOptions);
  const signal = new AbortController().signal;
  return {
    module,
    bus,
    images,
    containers,
    leases,
    namespaces,
    call: (ns, start) => invoke(start, { namespace: ns, lease: undefined, signal }),
    async events() {
      await module.flushEvents();
      const out: StoredEvent[] = [];
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), 50);
      for await (const e of bus.subscribe({ from: { kind: 'all' }, signal: ac.signal })) out.push(e);
      clearTimeout(timer);
      return out;
    },
    async close() {
      for (const c of [images, containers, leases, namespaces]) c.close();
      await bound.close(100);
      await module.close();
      if (ownBus) await bus.close();
      await dir.remove();
    },
  };
}
