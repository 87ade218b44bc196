import { appendFileSync } from 'node:fs';
import type { ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';

/**
 * OpenTelemetry tracing for a Berth process. Off unless asked for, so an idle node pays nothing:
 * `OTEL_TRACES_EXPORTER=otlp` (with the standard `OTEL_EXPORTER_OTLP_*` variables) or `console`, or
 * `BERTH_TRACE_FILE=<path>` for JSON lines on disk (used by tests and for offline debugging).
 * gRPC calls are traced on both sides and trace context travels in gRPC metadata across every hop.
 */
export interface TelemetryOptions {
  readonly serviceName: string;
  readonly env: Readonly<Record<string, string | undefined>>;
}

export function telemetryRequested(env: Readonly<Record<string, string | undefined>>): boolean {
  const exporter = env['OTEL_TRACES_EXPORTER'];
  return Boolean(env['BERTH_TRACE_FILE']) || (exporter !== undefined && exporter !== 'none');
}

export async function startTelemetry(opts: TelemetryOptions): Promise<{ shutdown(): Promise<void> } | undefined> {
  if (!telemetryRequested(opts.env)) return undefined;
  const [{ NodeSDK }, { GrpcInstrumentation }, { SimpleSpanProcessor, BatchSpanProcessor, ConsoleSpanExporter }] =
    await Promise.all([
      import('@opentelemetry/sdk-node'),
      import('@opentelemetry/instrumentation-grpc'),
      import('@opentelemetry/sdk-trace-base'),
    ]);
  const file = opts.env['BERTH_TRACE_FILE'];
  const processors = [];
  if (file) processors.push(new SimpleSpanProcessor(new JsonLinesExporter(file)));
  if (opts.env['OTEL_TRACES_EXPORTER'] === 'console')
    processors.push(new SimpleSpanProcessor(new ConsoleSpanExporter()));
  if (opts.env['OTEL_TRACES_EXPORTER'] === 'otlp') {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-grpc');
    processors.push(new BatchSpanProcessor(new OTLPTraceExporter()));
  }
  const sdk = new NodeSDK({
    serviceName: opts.serviceName,
    spanProcessors: processors,
    instrumentations: [new GrpcInstrumentation()],
  });
  sdk.start();
  return { shutdown: () => sdk.shutdown() };
}

/** One JSON object per finished span: enough to follow a trace across processes. */
class JsonLinesExporter implements SpanExporter {
  constructor(private readonly path: string) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    const lines = spans.map((s) =>
      JSON.stringify({
        name: s.name,
        kind: s.kind,
        traceId: s.spanContext().traceId,
        spanId: s.spanContext().spanId,
        parentSpanId: s.parentSpanContext?.spanId,
        service: s.resource.attributes['service.name'],
        startMs: s.startTime[0] * 1e3 + s.startTime[1] / 1e6,
        durationMs: s.duration[0] * 1e3 + s.duration[1] / 1e6,
        attributes: s.attributes,
        status: s.status,
      }),
    );
    try {
      appendFileSync(this.path, `${lines.join('\n')}\n`);
      done({ code: 0 });
    } catch (error) {
      done({ code: 1, error: error as Error });
    }
  }

  async shutdown(): Promise<void> {}
}
