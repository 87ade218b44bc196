import { lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode, ServiceError } from '@berth/common/errors';
import { nopLogger } from '@berth/common/log';
import { applyLayer } from '@berth/diff/archive/apply';
import { TarReader } from '@berth/diff/archive/tar-reader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chunked, fixChecksums, tarSeeds } from './seeds/tar.js';
import { int, mutate, report, rng, runsFor, seedFor } from './src/mutate.js';

function input(r: () => number): Buffer {
  const seed = tarSeeds[int(r, tarSeeds.length)] ?? Buffer.alloc(0);
  const m = mutate(r, seed, tarSeeds, 6);
  return r() < 0.9 ? fixChecksums(m) : m;
}

/** What a failure must look like: invalid_argument from our checks, or tar's own refusal of a member. */
function expectCleanFailure(e: unknown, what: string): string {
  if (!(e instanceof ServiceError)) throw new Error(`${what}: not a ServiceError: ${String(e)}`);
  if (
    e.code !== ErrorCode.InvalidArgument &&
    !(e.code === ErrorCode.Unknown && e.message.startsWith('failed to extract layer: tar exited'))
  )
    throw new Error(`${what}: unexpected ${e.code}: ${e.message}`);
  return e.code;
}

describe('fuzz: layer tar reader', () => {
  it('reads any byte stream member by member, or fails with invalid_argument', async () => {
    const runs = runsFor('tar_reader', 20_000);
    const r = rng(seedFor());
    const counts = { inputs: 0, entries: 0, complete: 0, rejected: 0 };
    for (let i = 0; i < runs; i++) {
      const bytes = input(r);
      const reader = new TarReader(chunked(bytes, () => 1 + int(r, r() < 0.5 ? 600 : 8)));
      counts.inputs++;
      try {
        for (let e = await reader.next(); e; e = await reader.next()) {
          counts.entries++;
          expect(e.size).toBeGreaterThanOrEqual(0);
          if (r() < 0.5) await reader.skip();
          else await reader.forwardBody(() => undefined);
        }
        await reader.end();
        counts.complete++;
      } catch (e) {
        expectCleanFailure(e, `input ${i}`);
        counts.rejected++;
      }
    }
    report('tar_reader', counts);
    expect(counts.complete).toBeGreaterThan(0);
    expect(counts.rejected).toBeGreaterThan(0);
  });
});

/**
 * Applies mutated layers over a small tree with symlink traps (to `../outside` and to an absolute path
 * outside), and checks after each one that nothing outside the root was created, changed or removed.
 */
describe('fuzz: Diff.Apply extractor (applyLayer)', () => {
  let sandbox: string;
  let outside: string;
  let snapshot: string;
  beforeAll(async () => {
    sandbox = await mkdtemp(join(tmpdir(), 'berth-fuzz-apply-'));
    outside = join(sandbox, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'sentinel'), 'untouched');
    snapshot = await tree(sandbox, 'root');
  });
  afterAll(async () => {
    await rm(sandbox, { recursive: true, force: true });
  });

  /** Every path under `dir` but `skip`, with type, size and mode: what must not change. */
  async function tree(dir: string, skip: string): Promise<string> {
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      for (const name of (await readdir(join(dir, rel))).sort()) {
        const p = rel === '' ? name : `${rel}/${name}`;
        if (p === skip) continue;
        const st = await lstat(join(dir, p));
        out.push(`${p} ${st.mode} ${st.size} ${st.isFile() ? await readFile(join(dir, p), 'utf8') : ''}`);
        if (st.isDirectory()) await walk(p);
      }
    };
    await walk('');
    return out.join('\n');
  }

  it('never writes outside the root, and fails only with invalid_argument or a tar refusal', async () => {
    const runs = runsFor('tar_apply', 300);
    const r = rng(seedFor() + 1);
    const counts = { inputs: 0, applied: 0, rejected: 0, tarRefused: 0 };
    const refusals = new Set<string>();
    const root = join(sandbox, 'root');
    for (let i = 0; i < runs; i++) {
      await rm(root, { recursive: true, force: true });
      await mkdir(join(root, 'etc'), { recursive: true });
      if (r() < 0.7) {
        await writeFile(join(root, 'etc', 'passwd'), 'root:x:0:0');
        await symlink('../outside', join(root, 'escape'));
        await symlink(outside, join(root, 'trap'));
      }
      counts.inputs++;
      const bytes = input(r);
      try {
        await applyLayer(
          chunked(bytes, () => 1 + int(r, 4096)),
          { root, whiteouts: r() < 0.5 ? 'overlay' : 'delete', parents: [], log: nopLogger },
        );
        counts.applied++;
      } catch (e) {
        if (expectCleanFailure(e, `input ${i}`) === ErrorCode.Unknown) {
          counts.tarRefused++;
          refusals.add((e as Error).message.replace(/\/tmp\/\S+/g, '<tmp>').slice(0, 200));
        } else counts.rejected++;
      }
      if ((i + 1) % 1000 === 0) report('tar_apply progress', counts);
      const now = await tree(sandbox, 'root');
      if (now !== snapshot)
        throw new Error(`input ${i} changed the sandbox outside the root:\n${now}\n---\n${bytes.toString('base64')}`);
    }
    report('tar_apply', counts);
    for (const m of refusals) process.stdout.write(`fuzz tar_apply refusal: ${m}\n`);
    expect(counts.applied).toBeGreaterThan(0);
    expect(counts.rejected).toBeGreaterThan(0);
  });
});
