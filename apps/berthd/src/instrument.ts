/**
 * Preloaded with `node --import` before main: auto-instrumentation must patch @grpc/grpc-js before anything
 * imports it, and for ES modules that needs the import-in-the-middle loader hook registered first.
 * Does nothing unless tracing was asked for (see @berth/common/telemetry).
 */
import { register } from 'node:module';
import { startTelemetry, telemetryRequested } from '@berth/common/telemetry';

if (telemetryRequested(process.env)) {
  // Only grpc-js is instrumented; hooking every other module would slow startup for nothing.
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url, { data: { include: ['@grpc/grpc-js'] } });
  const role = process.argv.includes('serve') ? process.argv[process.argv.indexOf('serve') + 1] : 'berthd';
  const telemetry = await startTelemetry({ serviceName: `berth-${role ?? 'berthd'}`, env: process.env });
  // Flush spans when the process ends, whichever way main decides to exit.
  process.once('beforeExit', () => void telemetry?.shutdown());
  process.once('exit', () => void telemetry?.shutdown());
}
