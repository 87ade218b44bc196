import koffi, { type LibraryHandle } from 'koffi';

/** glibc's allocator, as berthd steers it (through koffi). */
export interface GlibcMalloc {
  /** malloc_trim(3): hands the free pages of every arena back to the system (the main arena's top too). */
  trim(): void;
  /** For a burst of work: freed memory stays in the arenas for the next allocations. */
  busy(): void;
  /** For a quiet daemon: a free at an arena's top hands the top back to the system. */
  idle(): void;
}

/** mallopt(3) parameters (malloc.h). */
const M_TRIM_THRESHOLD = -1;
const M_MMAP_THRESHOLD = -3;
/**
 * Blocks this large or larger are mapped on their own (and unmapped when freed); glibc's dynamic threshold
 * reached 9 MB in berthd (PGlite's wasm, read and freed at start). 8 MB keeps a gRPC message (up to the 4 MiB
 * stream window) in the arenas.
 */
export const MMAP_THRESHOLD = 8 * 1024 * 1024;
/** glibc sets the trim threshold to twice the mmap threshold as it raises that. */
const BUSY_TRIM_THRESHOLD = 2 * MMAP_THRESHOLD;
/** glibc's default trim threshold. */
const IDLE_TRIM_THRESHOLD = 128 * 1024;

/**
 * Takes glibc's trim threshold into berthd's hands; undefined where the C library is not glibc.
 *
 * glibc raises its mmap and trim thresholds for good after the first large block is freed (berthd frees
 * PGlite's 9 MB of wasm at start): from then on a free at the top of an arena gives nothing back until the top
 * exceeds twice the largest such block. That is what keeps a pull fast (a 1 MB buffer freed at the top is
 * reused, not unmapped and faulted in again: with both thresholds fixed at 128 kB, berthd spent 36% more CPU
 * pulling a 500 MB layer), but an idle daemon paid for it: V8's compiler threads, which tier up PGlite's hot
 * functions while the daemon idles, each have an arena, and their tops held 26–46 MB of free memory (2.5 MB in
 * use) that malloc_trim does not reach (it trims the main arena's top only).
 *
 * So the thresholds are fixed here near what glibc's dynamic ones reached (mmap 8 MB, trim 16 MB: `busy`), and
 * `idle` lowers the trim threshold to glibc's default, so that the compiler threads' arenas shrink as they
 * free. Call first thing (it applies to blocks freed afterwards); starts busy.
 */
export function tuneMalloc(): GlibcMalloc | undefined {
  let libc: LibraryHandle;
  try {
    libc = koffi.load('libc.so.6');
  } catch {
    return undefined; // not glibc: its allocator has other rules
  }
  const mallopt = libc.func('int mallopt(int, int)');
  const trim = libc.func('int malloc_trim(size_t)');
  mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
  mallopt(M_TRIM_THRESHOLD, BUSY_TRIM_THRESHOLD);
  return {
    trim: () => trim(0),
    busy: () => mallopt(M_TRIM_THRESHOLD, BUSY_TRIM_THRESHOLD),
    idle: () => mallopt(M_TRIM_THRESHOLD, IDLE_TRIM_THRESHOLD),
  };
}
