import type { Logger } from './log.js';

/** Something that must be released at shutdown. */
export interface Closer {
  readonly name: string;
  close(): Promise<void>;
}

/**
 * Closes in reverse order of creation, each within `timeoutMs`; a failure or timeout is logged and the rest
 * still close. Never rejects.
 */
export async function closeAll(closers: readonly Closer[], log: Logger, timeoutMs = 5_000): Promise<void> {
  for (const c of [...closers].reverse()) {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        c.close(),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } catch (e) {
      log.warn('close failed', { closer: c.name, err: e });
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Runs `shutdown` once on the first SIGTERM or SIGINT; a second signal exits at once. */
export function onShutdownSignal(shutdown: (signal: NodeJS.Signals) => Promise<void>): void {
  let started = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (started) process.exit(130);
    started = true;
    shutdown(signal).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
}
