/**
 * Whether providers may use servers already listening on their standard loopback ports
 * (Postgres 127.0.0.1:5432, NATS 127.0.0.1:4222).
 *
 * Env: BERTH_TEST_LOOPBACK=0 skips them, so tests get private spawned servers instead.
 */
export function loopbackAllowed(): boolean {
  const v = process.env['BERTH_TEST_LOOPBACK'];
  return v !== '0' && v !== 'false';
}
