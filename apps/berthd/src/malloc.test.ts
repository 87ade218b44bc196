import koffi from 'koffi';
import { describe, expect, it } from 'vitest';
import { MMAP_THRESHOLD, tuneMalloc } from './malloc.js';

const libc = koffi.load('libc.so.6');
const malloc = libc.func('void *malloc(size_t)');
const free = libc.func('void free(void *)');
const Mallinfo2 = koffi.struct('berth_mallinfo2', {
  arena: 'size_t',
  ordblks: 'size_t',
  smblks: 'size_t',
  hblks: 'size_t',
  hblkhd: 'size_t',
  usmblks: 'size_t',
  fsmblks: 'size_t',
  uordblks: 'size_t',
  fordblks: 'size_t',
  keepcost: 'size_t',
});
const mallinfo2 = libc.func('mallinfo2', Mallinfo2, []);
const info = (): { hblkhd: number; keepcost: number } => {
  const i = mallinfo2() as Record<string, number | bigint>;
  return { hblkhd: Number(i['hblkhd']), keepcost: Number(i['keepcost']) };
};
const MB = 1024 * 1024;

// The tests run on the process's main thread, whose arena is the main one (what keepcost describes).
describe('tuneMalloc (glibc)', () => {
  const malloc_ = tuneMalloc();

  it('maps large blocks on their own even after one was freed (no dynamic threshold)', () => {
    expect(malloc_).toBeDefined();
    const size = 2 * MMAP_THRESHOLD;
    // Untuned, freeing this raises the mmap threshold above its size (and the trim threshold to twice that).
    free(malloc(size));
    const before = info().hblkhd;
    const block = malloc(size);
    try {
      // …and this one would come from the arena.
      expect(info().hblkhd - before).toBeGreaterThanOrEqual(size);
    } finally {
      free(block);
    }
  });

  it('keeps a freed top while busy and hands it back while idle', () => {
    const size = 4 * MB; // below the mmap threshold: from the arena, at its top
    malloc_?.busy();
    const block = malloc(size);
    const before = info().keepcost;
    free(block);
    // The freed block joined the top and stays there, ready for the next burst.
    expect(info().keepcost - before).toBeGreaterThanOrEqual(size);
    malloc_?.idle();
    free(malloc(size));
    expect(info().keepcost).toBeLessThan(MB);
    malloc_?.busy();
  });
});
