/** Options every command gets, from the flags before the command name (as `ctr` takes them). */
export interface GlobalOptions {
  /** The node socket: `--address`, else $BERTH_ADDRESS, else $CONTAINERD_ADDRESS, else /run/berth/berth.sock. */
  readonly address: string;
  /** `--namespace`/`-n`, else $BERTH_NAMESPACE, else $CONTAINERD_NAMESPACE, else `default`. */
  readonly namespace: string;
}

/** Where a command writes; the real process streams in main.ts, tests pass buffers. */
export interface Output {
  out(line: string): void;
  err(line: string): void;
}

/**
 * One `berth <name>` command. `run` resolves with the exit code; it stops early (code 0) when `signal`
 * aborts (Ctrl-C). Usage errors throw `UsageError`.
 */
export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  run(args: readonly string[], global: GlobalOptions, io: Output, signal: AbortSignal): Promise<number>;
}

export class UsageError extends Error {
  override readonly name = 'UsageError';
}
