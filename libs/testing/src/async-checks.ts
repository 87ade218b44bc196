import { setTimeout as sleep } from 'node:timers/promises';

/**
 * What `p` rejected with, as `E` (the caller's word for it, unchecked); fails the test when `p` resolves.
 */
export async function rejection<E = Error>(p: Promise<unknown>): Promise<E> {
  try {
    await p;
  } catch (e) {
    return e as E;
  }
  throw new Error('expected a rejection');
}

/** Runs `check` until it passes, every 20 ms, for up to `timeoutMs`; then fails with its last error. */
export async function eventually(check: () => Promise<void>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await sleep(20);
    }
  }
}
