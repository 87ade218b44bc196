/**
 * Runs an idempotent S3 request, once more if the connection it went out on was already closed: a pooled
 * keep-alive socket that the server closed while idle (Node servers such as s3rver after 5 s, S3 itself later)
 * fails the next request written to it with EPIPE or ECONNRESET before the server saw it.
 */
export async function again<T>(request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (e) {
    const code = typeof e === 'object' && e !== null ? (e as { code?: unknown }).code : undefined;
    if (code !== 'EPIPE' && code !== 'ECONNRESET') throw e;
    return request();
  }
}
