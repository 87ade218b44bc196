import { rejection } from '@berth/testing/async-checks';
import { describe, expect, it } from 'vitest';
import { backgroundContext, type RequestContext } from './context.js';
import { ErrorCode, notFound, ServiceError } from './errors.js';
import { fromGrpcError, toGrpcError } from './grpc-status.js';
import { localCall } from './local-call.js';
import { nopLogger } from './log.js';

/** What a client of a gRPC handler throwing `e` receives. */
const overTheWire = (e: unknown): ServiceError => fromGrpcError(toGrpcError(e));

describe('localCall', () => {
  it('gives the callee the namespace and lease a server would read from the headers', async () => {
    const seen: RequestContext[] = [];
    const caller = { ...backgroundContext(nopLogger, 'ns'), lease: 'l1' };
    await localCall(caller, async (ctx) => void seen.push(ctx));
    await localCall({ ...caller, namespace: '', lease: '' }, async (ctx) => void seen.push(ctx));
    expect(seen.map((c) => [c.namespace, c.lease])).toEqual([
      ['ns', 'l1'],
      [undefined, undefined],
    ]);
    expect(seen[0]?.signal).toBe(caller.signal);
  });

  it("leaves the caller's signal and logger unmade unless the callee uses them", async () => {
    const made: string[] = [];
    const base = backgroundContext(nopLogger, 'ns');
    const caller: RequestContext = {
      namespace: 'ns',
      lease: undefined,
      get signal() {
        made.push('signal');
        return base.signal;
      },
      get log() {
        made.push('log');
        return base.log;
      },
    };
    await localCall(caller, async (ctx) => ctx.namespace);
    expect(made).toEqual([]);
    await localCall(caller, async (ctx) => ctx.signal.aborted);
    expect(made).toEqual(['signal']);
  });

  it('fails with the code and message a gRPC client would get', async () => {
    const thrown: unknown[] = [
      notFound('container "c" in namespace "ns"'),
      new Error('connection reset'),
      Object.assign(new Error('bad filter'), { code: 'invalid_argument' }),
      new DOMException('aborted', 'AbortError'),
      'a string',
    ];
    for (const e of thrown) {
      const got = await rejection<ServiceError>(
        localCall(backgroundContext(nopLogger, 'ns'), async () => {
          throw e;
        }),
      );
      const wire = overTheWire(e);
      expect(got).toBeInstanceOf(ServiceError);
      expect([got.code, got.message]).toEqual([wire.code, wire.message]);
    }
    const e = notFound('x');
    expect(await rejection<ServiceError>(localCall(backgroundContext(nopLogger), () => Promise.reject(e)))).toBe(e);
    expect(overTheWire(new Error('boom')).code).toBe(ErrorCode.Unknown);
  });
});
