import { describe, expect, it } from 'vitest';
import { backgroundContext } from './context.js';
import { codeOf, ErrorCode } from './errors.js';
import { createLogger } from './log.js';
import { stallGuard } from './stall.js';

const never = <T>(): Promise<T> => new Promise<T>(() => undefined);

describe('StallGuard', () => {
  it('fails a wait that makes no progress with deadline_exceeded naming the stage, logs it, and aborts', async () => {
    const lines: string[] = [];
    const ctx = backgroundContext(createLogger({ write: (l) => lines.push(l) }), 'default');
    const guard = stallGuard(ctx, 'diff apply', 50);
    const started = Date.now();
    const err = await guard.wait(never(), 'tar stdin').catch((e: unknown) => e);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(codeOf(err)).toBe(ErrorCode.DeadlineExceeded);
    expect((err as Error).message).toBe('diff apply: tar stdin made no progress for 0.050s: context deadline exceeded');
    expect(guard.signal.aborted).toBe(true);
    expect(lines.join('')).toMatch(/"level":"error","msg":"stream stalled".*"stage":"tar stdin"/);
    // Every other wait of the call fails the same way, at once.
    const other = await guard.wait(Promise.resolve(1), 'content read').catch((e: unknown) => e);
    expect((other as Error).message).toMatch(/tar stdin made no progress/);
    guard.close();
  });

  it('lets steady progress through, however long the whole takes', async () => {
    const guard = stallGuard(backgroundContext(createLogger({ level: 'silent' })), 'content write', 60);
    async function* slow(): AsyncGenerator<number> {
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 20));
        yield i;
      }
    }
    const got: number[] = [];
    for await (const n of guard.iterate(slow(), 'client stream')) got.push(n);
    expect(got).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(guard.signal.aborted).toBe(false);
    guard.close();
  });

  it('a cancelled call rejects every pending wait at once with canceled', async () => {
    const client = new AbortController();
    const guard = stallGuard(
      backgroundContext(createLogger({ level: 'silent' }), 'default', client.signal),
      'x',
      60_000,
    );
    const pending = [guard.wait(never(), 'a'), guard.wait(never(), 'b')].map((p) => p.catch((e: unknown) => e));
    client.abort(new DOMException('client canceled the call', 'AbortError'));
    const errs = await Promise.all(pending);
    expect(errs.map(codeOf)).toEqual([ErrorCode.Canceled, ErrorCode.Canceled]);
    guard.close();
  });

  it('iterate stops waiting on a stalled source without waiting for the source to return', async () => {
    const guard = stallGuard(backgroundContext(createLogger({ level: 'silent' })), 'x', 40);
    async function* stuck(): AsyncGenerator<number> {
      yield 1;
      await never();
    }
    const got: number[] = [];
    const err = await (async () => {
      for await (const n of guard.iterate(stuck(), 'source')) got.push(n);
    })().catch((e: unknown) => e);
    expect(got).toEqual([1]);
    expect(codeOf(err)).toBe(ErrorCode.DeadlineExceeded);
    guard.close();
  });
});
