/**
 * Deterministic byte mutation for the fuzzers: a seeded PRNG (mulberry32, so a failure reproduces from its seed
 * and index) and the usual mutators of coverage-less fuzzers: bit flips, interesting bytes and integers, inserted
 * and deleted runs, duplicated and spliced pieces, truncation.
 */

import { mulberry32 } from '@berth/testing/prng';

export type Rng = () => number;

export const rng: (seed: number) => Rng = mulberry32;

export const int = (r: Rng, n: number): number => Math.floor(r() * n);
export const pick = <T>(r: Rng, xs: readonly T[]): T => {
  const x = xs[int(r, xs.length)];
  if (x === undefined) throw new Error('pick from an empty list');
  return x;
};

const interestingBytes = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x2f, 0x2e, 0x30, 0x37, 0x0a, 0x20, 0x22, 0x5c, 0x7b, 0x7d];
const interestingInts = [0, 1, -1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff];

/** One to `maxOps` random edits of `input` (never the input object itself); `pool` feeds splices. */
export function mutate(r: Rng, input: Uint8Array, pool: readonly Uint8Array[] = [], maxOps = 4): Buffer {
  let b = Buffer.from(input);
  const ops = 1 + int(r, maxOps);
  for (let i = 0; i < ops; i++) {
    const at = b.length === 0 ? 0 : int(r, b.length);
    switch (int(r, 10)) {
      case 0: // flip a bit
        if (b.length > 0) b[at] = (b[at] ?? 0) ^ (1 << int(r, 8));
        break;
      case 1: // an interesting byte
        if (b.length > 0) b[at] = pick(r, interestingBytes);
        break;
      case 2: {
        // an interesting integer, little or big endian
        const v = pick(r, interestingInts) >>> 0;
        const w = Buffer.alloc(4);
        if (r() < 0.5) w.writeUInt32LE(v);
        else w.writeUInt32BE(v);
        const len = pick(r, [1, 2, 4]);
        w.subarray(0, len).copy(b, at, 0, Math.min(len, b.length - at));
        break;
      }
      case 3: // random byte
        if (b.length > 0) b[at] = int(r, 256);
        break;
      case 4: {
        // insert random bytes
        const n = 1 + int(r, 16);
        const ins = Buffer.from(Array.from({ length: n }, () => int(r, 256)));
        b = Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
        break;
      }
      case 5: {
        // delete a run
        const n = 1 + int(r, 16);
        b = Buffer.concat([b.subarray(0, at), b.subarray(at + n)]);
        break;
      }
      case 6: {
        // duplicate a run
        const n = 1 + int(r, 32);
        b = Buffer.concat([b.subarray(0, at + n), b.subarray(at, at + n), b.subarray(at + n)]);
        break;
      }
      case 7: {
        // splice in a piece of another input
        const other = pool.length > 0 ? pick(r, pool) : b;
        const from = int(r, Math.max(1, other.length));
        const piece = Buffer.from(other.subarray(from, from + 1 + int(r, 64)));
        b = Buffer.concat([b.subarray(0, at), piece, b.subarray(at + int(r, 8))]);
        break;
      }
      case 8: // truncate
        b = b.subarray(0, at);
        break;
      default: {
        // overwrite with a copy of another place
        const from = int(r, Math.max(1, b.length));
        const n = 1 + int(r, 8);
        b.copy(b, at, from, Math.min(b.length, from + n));
        break;
      }
    }
  }
  return b;
}

/**
 * How many inputs a fuzzer runs: `FUZZ_RUNS_<NAME>` or `FUZZ_RUNS` from the environment, else `short` (what the
 * test suite runs in CI). Long runs: see fuzz/README.md.
 */
export function runsFor(name: string, short: number, env: NodeJS.ProcessEnv = process.env): number {
  const v = env[`FUZZ_RUNS_${name.toUpperCase()}`] ?? env['FUZZ_RUNS'];
  const n = v === undefined ? short : Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`FUZZ_RUNS for ${name}: ${JSON.stringify(v)} is not a count`);
  return n;
}

/** The seed of a run: `FUZZ_SEED` or a fixed default, so CI runs are repeatable and long runs can vary it. */
export function seedFor(env: NodeJS.ProcessEnv = process.env): number {
  return Number(env['FUZZ_SEED'] ?? 0x5eed);
}

/** One line per finished run, for the long-run log (fuzz/README.md). */
export function report(name: string, counts: Readonly<Record<string, number>>): void {
  process.stdout.write(`fuzz ${name}: ${JSON.stringify(counts)}\n`);
}
