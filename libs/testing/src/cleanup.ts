/**
 * Last-resort cleanup of what the kit started: spawned servers are killed and temp dirs deleted
 * when the test process exits (normally, or on SIGINT/SIGTERM/SIGHUP), even if a test never
 * called stop()/drop(). Handlers must be synchronous.
 */

type Handler = () => void;

const handlers = new Set<Handler>();
let installed = false;

function runAll(): void {
  // Run in reverse registration order: processes first (registered after their dirs), then dirs.
  for (const h of [...handlers].reverse()) {
    handlers.delete(h);
    try {
      h();
    } catch {
      // Best effort: the process is going away.
    }
  }
}

function install(): void {
  if (installed) return;
  installed = true;
  process.once('exit', runAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      runAll();
      // Keep the default behaviour (die by that signal) unless someone else handles it.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    });
  }
}

/** Registers a synchronous handler to run at process exit; returns a function that unregisters it. */
export function onProcessExit(handler: Handler): () => void {
  install();
  handlers.add(handler);
  return () => {
    handlers.delete(handler);
  };
}

/** Kills `pid` with `signal` at process exit unless the returned function is called first. */
export function killAtExit(pid: number, signal: NodeJS.Signals = 'SIGKILL'): () => void {
  return onProcessExit(() => {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  });
}
