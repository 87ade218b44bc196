import { dial } from '@berth/common/grpc-client';
import type { Logger } from '@berth/common/log';
import type { GrpcRegistration, PluginDescription, ServiceModule } from '@berth/common/service';
import {
  IntrospectionClient,
  IntrospectionService,
  type Plugin,
  type PluginsResponse,
} from '@berth/proto/containerd/services/introspection/v1/introspection';
import { VersionService } from '@berth/proto/containerd/services/version/v1/version';
import { HealthService } from '@berth/proto/grpc/health/v1/health';
import * as grpc from '@grpc/grpc-js';
import { createHealthState } from './grpc/health-server.js';
import { createIntrospectionServer } from './grpc/introspection-server.js';
import { pluginToProto } from './grpc/plugins.js';
import { createUpstream, forwardedService } from './grpc/proxy.js';
import { type BuildInfo, createVersionServer } from './grpc/version-server.js';
import { type BerthServiceName, ownedServices, serviceNameOf } from './routing/routes.js';

export type { BuildInfo } from './grpc/version-server.js';
export { loadNodeUuid } from './node/node-identity.js';
export { type BerthServiceName, berthServiceNames } from './routing/routes.js';

export interface GatewayOptions {
  readonly log: Logger;
  readonly build: BuildInfo;
  readonly uuid: string;
  /** Services hosted in this process; the host registers their gRPC services on the same server. */
  readonly local: readonly ServiceModule[];
  /** Services in other processes, by name, at `unix:///…` or `host:port`. */
  readonly upstreams: Readonly<Partial<Record<BerthServiceName, string>>>;
  /** How often upstreams are probed for health. Default 5 s. */
  readonly probeMs?: number;
}

/**
 * The node's front door. Serves Version, Introspection and Health itself and forwards every RPC of an
 * upstream service, by its gRPC service name, to the process that owns it.
 */
export function createGatewayModule(opts: GatewayOptions): ServiceModule {
  const log = opts.log.child({ service: 'gateway' });
  const health = createHealthState();
  const forwarded: GrpcRegistration[] = [];
  const upstreams: Array<{ name: BerthServiceName; client: grpc.Client; introspection: IntrospectionClient }> = [];

  for (const [name, address] of Object.entries(opts.upstreams) as Array<[BerthServiceName, string | undefined]>) {
    if (!address) continue;
    const client = createUpstream(address);
    for (const def of ownedServices[name]) {
      forwarded.push(forwardedService(def, client));
      health.set(serviceNameOf(def), false);
    }
    upstreams.push({
      name,
      client,
      introspection: dial(IntrospectionClient, address),
    });
  }
  for (const m of opts.local) for (const r of m.grpc) health.set(serviceNameOf(r.definition), true);

  const own: PluginDescription[] = [
    { type: 'io.containerd.grpc.v1', id: 'version' },
    { type: 'io.containerd.grpc.v1', id: 'introspection' },
    { type: 'io.containerd.grpc.v1', id: 'healthcheck' },
    ...upstreams.map((u) => ({
      type: 'io.berth.gateway.v1',
      id: u.name,
      exports: { address: opts.upstreams[u.name] ?? '' },
    })),
  ];

  /** Asks one upstream for its plugins; an unreachable one shows its gRPC services as errored plugins. */
  const upstreamPlugins = async (u: (typeof upstreams)[number]): Promise<Plugin[]> => {
    try {
      const res = await new Promise<PluginsResponse>((resolve, reject) =>
        u.introspection.plugins({ filters: [] }, new grpc.Metadata(), { deadline: Date.now() + 2_000 }, (err, r) =>
          err ? reject(err) : resolve(r),
        ),
      );
      markUpstream(u.name, true);
      return res.plugins;
    } catch (e) {
      markUpstream(u.name, false);
      const reason = `${u.name} unreachable at ${opts.upstreams[u.name] ?? ''}: ${(e as Error).message}`;
      return ownedServices[u.name].map((def) =>
        pluginToProto({ type: 'io.containerd.grpc.v1', id: grpcPluginId(def) }, reason),
      );
    }
  };

  const markUpstream = (name: BerthServiceName, up: boolean): void => {
    for (const def of ownedServices[name]) health.set(serviceNameOf(def), up);
  };

  const probe = async (): Promise<void> => {
    await Promise.all(upstreams.map(upstreamPlugins));
  };
  const timer = setInterval(() => void probe(), opts.probeMs ?? 5_000);
  timer.unref();
  void probe();

  const plugins = async (): Promise<Plugin[]> => [
    ...own.map((p) => pluginToProto(p)),
    ...opts.local.flatMap((m) => m.plugins.map((p) => pluginToProto(p))),
    ...(await Promise.all(upstreams.map(upstreamPlugins))).flat(),
  ];

  return {
    name: 'gateway',
    grpc: [
      { definition: VersionService, implementation: createVersionServer(opts.build, log) },
      {
        definition: IntrospectionService,
        implementation: createIntrospectionServer({ uuid: opts.uuid, plugins, log }),
      },
      { definition: HealthService, implementation: health.server(log) },
      ...forwarded,
    ],
    plugins: own,
    async notReady() {
      const down = upstreams.filter(
        (u) => u.client.getChannel().getConnectivityState(false) === grpc.connectivityState.TRANSIENT_FAILURE,
      );
      return down.length > 0 ? `upstreams unreachable: ${down.map((u) => u.name).join(', ')}` : undefined;
    },
    async close() {
      clearInterval(timer);
      for (const u of upstreams) {
        u.client.close();
        u.introspection.close();
      }
    },
  };
}

/** containerd names its gRPC plugins after the service: `containerd.services.content.v1.Content` → `content`. */
function grpcPluginId(def: grpc.ServiceDefinition): string {
  return serviceNameOf(def).split('.').at(-1)?.toLowerCase() ?? '';
}
