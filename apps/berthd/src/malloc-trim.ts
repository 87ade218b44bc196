import koffi from 'koffi';

/**
 * Gives the system back what glibc's allocator keeps after `free` (malloc_trim(3)). In an all-in-one
 * berthd, V8's compiler threads (PGlite's wasm is compiled, then re-compiled hot, in the background) and
 * libuv's pool leave tens of MB of freed memory in their malloc arenas, resident until trimmed; a trim
 * takes a few milliseconds. Runs once soon after start, then every `intervalMs`. Returns a stop function.
 */
export function trimMallocPeriodically(intervalMs = 60_000): () => void {
  let trim: (pad: number) => number;
  try {
    trim = koffi.load('libc.so.6').func('int malloc_trim(size_t)');
  } catch {
    return () => undefined; // not glibc: nothing to trim this way
  }
  const first = setTimeout(() => trim(0), 10_000);
  const every = setInterval(() => trim(0), intervalMs);
  first.unref();
  every.unref();
  return () => {
    clearTimeout(first);
    clearInterval(every);
  };
}
