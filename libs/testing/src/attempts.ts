/**
 * Where a test server came from, and the loud error thrown when no server could be had.
 */

/**
 * How a provider got its server:
 * - `container`: started with testcontainers (only where a container runtime answers);
 * - `env`: named by a BERTH_TEST_* environment variable;
 * - `loopback`: already listening on its standard loopback port (Postgres 5432, NATS 4222);
 * - `spawned`: a child process the kit started on a free port (Postgres, NATS);
 * - `in-process`: a server running inside the test process (s3rver).
 */
export type ServerSource = 'container' | 'env' | 'loopback' | 'spawned' | 'in-process';

/** Thrown when every way of getting a server failed. The message lists each attempt and why. */
export class TestServerUnavailableError extends Error {
  override readonly name = 'TestServerUnavailableError';
  constructor(
    readonly kind: string,
    readonly attempts: readonly string[],
  ) {
    super(
      `@berth/testing: no ${kind} server could be had for this test (tests never skip for that).\n` +
        `Tried, in order:\n${attempts.map((a, i) => `  ${i + 1}. ${a}`).join('\n')}`,
    );
  }
}

/** Collects "what was tried and what happened" lines while a provider walks its fallbacks. */
export class Attempts {
  private readonly lines: string[] = [];
  constructor(private readonly kind: string) {}

  note(step: string, outcome: unknown): void {
    this.lines.push(`${step}: ${describe(outcome)}`);
  }

  /** Throws {@link TestServerUnavailableError} with everything noted so far. */
  fail(): never {
    throw new TestServerUnavailableError(this.kind, this.lines);
  }
}

/** Short text for an error or message, for attempt lists and wrapped errors. */
export function describe(outcome: unknown): string {
  if (outcome instanceof Error) {
    const code = (outcome as Error & { code?: unknown }).code;
    const text = outcome.message || String(outcome);
    return typeof code === 'string' && !text.includes(code) ? `${text} (${code})` : text;
  }
  return String(outcome);
}
