import Fastify, { type FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Logger } from './log.js';

export interface OpsServerOptions {
  readonly log: Logger;
  /** Service name, added as a label to every metric. */
  readonly service: string;
  /** Readiness check: `/readyz` answers 503 with the reason while it returns a string. */
  readonly notReady?: () => Promise<string | undefined> | string | undefined;
  /** A registry the service adds its own metrics to; one is created when omitted. */
  readonly registry?: Registry;
}

export interface OpsServer {
  readonly app: FastifyInstance;
  readonly registry: Registry;
  /** Listens on `host:port` (port 0 picks one) and returns the bound URL. */
  listen(address: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * The small HTTP server each service runs beside gRPC: `/healthz` (the process is alive), `/readyz` (its
 * dependencies answer) and `/metrics` (Prometheus text format). Services may add routes to `app`.
 */
export function createOpsServer(opts: OpsServerOptions): OpsServer {
  const registry = opts.registry ?? new Registry();
  registry.setDefaultLabels({ service: opts.service });
  collectDefaultMetrics({ register: registry });
  const app = Fastify({ logger: false });

  app.get('/healthz', async () => ({ status: 'ok' }));
  app.get('/readyz', async (_req, reply) => {
    const reason = await opts.notReady?.();
    if (reason) return reply.code(503).send({ status: 'not ready', reason });
    return { status: 'ready' };
  });
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });

  return {
    app,
    registry,
    async listen(address) {
      const m = /^(.*):(\d+)$/.exec(address);
      const host = m?.[1] ?? '127.0.0.1';
      const port = Number(m?.[2] ?? 0);
      const url = await app.listen({ host, port });
      opts.log.info('ops http listening', { url });
      return url;
    },
    close: () => app.close(),
  };
}
