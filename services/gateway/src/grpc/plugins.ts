import { adaptorFromObject, parseFilters } from '@berth/common/filters';
import type { PluginDescription } from '@berth/common/service';
import type { Plugin } from '@berth/proto/containerd/services/introspection/v1/introspection';
import { status as grpcStatus } from '@grpc/grpc-js';

/** A plugin description as containerd's Introspection answers it; `failure` marks it errored (ctr: "error"). */
export function pluginToProto(p: PluginDescription, failure?: string): Plugin {
  return {
    type: p.type,
    id: p.id,
    requires: [...(p.requires ?? [])],
    platforms: [],
    exports: { ...(p.exports ?? {}) },
    capabilities: [...(p.capabilities ?? [])],
    initErr: failure === undefined ? undefined : { code: grpcStatus.UNAVAILABLE, message: failure, details: [] },
  };
}

/** Plugins matching containerd's filters on `type`, `id` and `capabilities`; invalid_argument for a malformed filter. */
export function matchPlugins(plugins: readonly Plugin[], filters: readonly string[]): Plugin[] {
  const filter = parseFilters(filters);
  return plugins.filter((p) =>
    filter.match(adaptorFromObject({ type: p.type, id: p.id, capabilities: p.capabilities.join(',') })),
  );
}
