import { notFound } from '@berth/common/errors';
import { handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import {
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthServer,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from '@berth/proto/grpc/health/v1/health';
import type * as grpc from '@grpc/grpc-js';

/** Serving state per gRPC service name ("" is the whole server), as the standard health protocol defines. */
export interface HealthState {
  set(service: string, serving: boolean): void;
  server(log: Logger): HealthServer;
}

export function createHealthState(): HealthState {
  const state = new Map<string, ServingStatus>([['', ServingStatus.SERVING]]);
  const watchers = new Set<() => void>();
  return {
    set(service, serving) {
      const next = serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
      if (state.get(service) === next) return;
      state.set(service, next);
      for (const w of watchers) w();
    },
    server(log) {
      const h = handlers(log);
      return {
        check: h.unary(async (req: HealthCheckRequest): Promise<HealthCheckResponse> => {
          const status = state.get(req.service);
          if (status === undefined) throw notFound(`service ${JSON.stringify(req.service)}`);
          return { status };
        }),
        watch: (call: grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
          let last: ServingStatus | undefined;
          const send = (): void => {
            const status = state.get(call.request.service) ?? ServingStatus.SERVICE_UNKNOWN;
            if (status !== last) call.write({ status });
            last = status;
          };
          watchers.add(send);
          call.on('cancelled', () => watchers.delete(send));
          send();
        },
      };
    },
  };
}
