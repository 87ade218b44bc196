import { handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type { IntrospectionServer, Plugin } from '@berth/proto/containerd/services/introspection/v1/introspection';
import { matchPlugins } from './plugins.js';

export interface IntrospectionDeps {
  /** The node's identity, stable across restarts. */
  readonly uuid: string;
  /** Every plugin of the node, with the state of each. */
  readonly plugins: () => Promise<Plugin[]>;
  readonly log: Logger;
}

export function createIntrospectionServer(deps: IntrospectionDeps): IntrospectionServer {
  const h = handlers(deps.log);
  return {
    plugins: h.unary(async (req) => ({ plugins: matchPlugins(await deps.plugins(), req.filters) })),
    server: h.unary(async () => ({ uuid: deps.uuid })),
  };
}
