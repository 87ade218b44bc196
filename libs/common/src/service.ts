import type * as grpc from '@grpc/grpc-js';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { CollectablePart } from './collectable.js';
import type { GrpcRegistration } from './grpc-registration.js';
import type { NamespaceUsage } from './namespace-usage.js';

export type { GrpcRegistration } from './grpc-registration.js';

/** How a service shows itself in `ctr plugins ls` (containerd's plugin type and id). */
export interface PluginDescription {
  readonly type: string;
  readonly id: string;
  readonly requires?: readonly string[];
  readonly exports?: Readonly<Record<string, string>>;
  readonly capabilities?: readonly string[];
}

/**
 * A Berth service built from its dependencies: the gRPC services it serves, its plugins, and how to stop
 * it. The same module is hosted alone (`berthd serve <name>`) or beside the others (all-in-one).
 */
export interface ServiceModule {
  readonly name: string;
  readonly grpc: readonly GrpcRegistration[];
  readonly plugins: readonly PluginDescription[];
  /** Present on services that keep namespaced resources: what a namespace still holds here. */
  readonly namespaceUsage?: NamespaceUsage;
  /** Present on owners of collectable resources: what a garbage collector in another process reads and removes. */
  readonly collectable?: CollectablePart;
  /** A reason while the service cannot serve (a dependency is down); undefined when ready. */
  notReady?(): Promise<string | undefined>;
  /**
   * Adds the service's own routes to the process's ops HTTP server (when one is configured), before it listens;
   * `registry` is the one its `/metrics` serves, for the service's own Prometheus metrics.
   */
  http?(app: FastifyInstance, registry?: Registry): void;
  close(): Promise<void>;
}

/** Adds every registration of `modules` to `server`. */
export function registerAll(server: grpc.Server, modules: readonly ServiceModule[]): void {
  for (const m of modules) for (const r of m.grpc) server.addService(r.definition, r.implementation);
}
