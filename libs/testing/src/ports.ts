/**
 * Free TCP port discovery for servers the kit spawns itself.
 */
import { createServer } from 'node:net';

/**
 * Returns a TCP port that was free on `host` a moment ago (the OS picks it by binding port 0).
 * Another process may still grab it before you bind, so callers that spawn servers should retry
 * with a new port when the bind fails.
 */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error(`freePort: unexpected server address ${String(addr)}`));
        return;
      }
      const { port } = addr;
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}
