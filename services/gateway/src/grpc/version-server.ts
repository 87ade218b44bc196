import { handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type { VersionServer } from '@berth/proto/containerd/services/version/v1/version';

export interface BuildInfo {
  /** Semver of the containerd API we implement, with Berth's own version as build metadata. */
  readonly version: string;
  readonly revision: string;
}

export function createVersionServer(build: BuildInfo, log: Logger): VersionServer {
  const h = handlers(log);
  return { version: h.unary(async () => ({ version: build.version, revision: build.revision })) };
}
