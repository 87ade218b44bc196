import { backgroundContext } from '@berth/common/context';
import { ErrorCode, notFound, ServiceError } from '@berth/common/errors';
import { nopLogger } from '@berth/common/log';
import { describe, expect, it } from 'vitest';
import type { ContentClient } from './content-client.js';
import { withLocalReads } from './local-reads.js';

const remote: ContentClient = {
  read: () => {
    throw new Error('reads must not go remote');
  },
  write: async () => undefined,
  list: async () => [],
  close: () => undefined,
};

async function collect(it: AsyncIterable<Buffer>): Promise<string> {
  const out: Buffer[] = [];
  for await (const b of it) out.push(b);
  return Buffer.concat(out).toString();
}

describe('withLocalReads', () => {
  const ctx = backgroundContext(nopLogger, 'ns');

  it('streams what the local store returns, as an array or as a stream, in the caller namespace', async () => {
    const seen: string[] = [];
    const client = withLocalReads(async (c, digest) => {
      seen.push(`${c.namespace}/${digest}`);
      return digest === 'small'
        ? [Buffer.from('ab')]
        : (async function* () {
            yield Buffer.from('cd');
            yield Buffer.from('ef');
          })();
    }, remote);
    expect(await collect(client.read(ctx, 'small'))).toBe('ab');
    expect(await collect(client.read(ctx, 'big'))).toBe('cdef');
    expect(seen).toEqual(['ns/small', 'ns/big']);
  });

  it('fails as the RPC would: errdefs codes kept, foreign errors as unknown', async () => {
    const missing = withLocalReads(async () => {
      throw notFound('content digest x');
    }, remote);
    await expect(collect(missing.read(ctx, 'x'))).rejects.toMatchObject({ code: ErrorCode.NotFound });
    const broken = withLocalReads(
      async () =>
        (async function* () {
          yield Buffer.from('a');
          throw new Error('disk gone');
        })(),
      remote,
    );
    const e = await collect(broken.read(ctx, 'y')).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ServiceError);
    expect((e as ServiceError).code).toBe(ErrorCode.Unknown);
  });

  it('closes the local stream when the reader stops early', async () => {
    let closed = false;
    const client = withLocalReads(
      async () =>
        (async function* () {
          try {
            for (;;) yield Buffer.from('x');
          } finally {
            closed = true;
          }
        })(),
      remote,
    );
    for await (const _ of client.read(ctx, 'z')) break;
    expect(closed).toBe(true);
  });
});
