import { spawn } from 'node:child_process';
import { ImagesClient } from '@berth/proto/containerd/services/images/v1/images';
import { ociIndexType } from '@berth/testing/tiny-image';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr } from './src/ctr.js';

/**
 * `(a+)+$` over `a…ab` takes a backtracking engine time exponential in the run of `a`s (28 of them took 4.5 s);
 * with a linear-time engine a 10,000-character name answers at once, for a List and for an events subscription.
 */
const evil = '(a+)+$';
const longName = `${'a'.repeat(10_000)}b`;

describe('filters run in linear time (real ctr against berthd)', () => {
  let d: BerthdProcess;
  let images: ImagesClient;
  beforeAll(async () => {
    d = await startBerthd();
    images = new ImagesClient(`unix://${d.socket}`, grpc.credentials.createInsecure());
  });
  afterAll(async () => {
    images?.close();
    await d?.stop();
  });

  const createImage = (name: string): Promise<void> => {
    const md = new grpc.Metadata();
    md.set('containerd-namespace', 'default');
    const target = { mediaType: ociIndexType, digest: `sha256:${'c'.repeat(64)}`, size: 1, annotations: {} };
    return new Promise((resolve, reject) =>
      images.create({ image: { name, labels: {}, target } }, md, (err) => (err ? reject(err) : resolve())),
    );
  };

  it(`ctr images ls 'name~=${evil}' over a 10,000-character name answers well under a second`, async () => {
    await createImage(longName);
    await createImage(`${'a'.repeat(50)}`);
    const start = performance.now();
    const ls = await ctr(d.socket, ['images', 'ls', '-q', `name~=${evil}`], { timeoutMs: 30_000 });
    const elapsed = performance.now() - start;
    process.stdout.write(`ctr images ls name~=${evil} over a 10,000-character name: ${Math.round(elapsed)} ms\n`);
    expect(ls.code, ls.stderr).toBe(0);
    expect(ls.stdout.trim().split('\n')).toEqual(['a'.repeat(50)]);
    expect(elapsed).toBeLessThan(1000);
  });

  it('an events subscription with that filter keeps delivering while it rejects the long name', async () => {
    const child = spawn(
      'ctr',
      ['--address', d.socket, 'events', `event.name~=${evil}`, 'topic=="/namespaces/create"'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    try {
      // Wait until the subscription is attached (it prints the probe namespaces' creation).
      for (let i = 0; !out.includes('/namespaces/create'); i++) {
        expect(i).toBeLessThan(100);
        expect((await ctr(d.socket, ['namespaces', 'create', `redos-probe-${i}`])).code).toBe(0);
        await new Promise((r) => setTimeout(r, 100));
      }
      await createImage(`${longName}:2`);
      await createImage(`${'a'.repeat(10_000)}`);
      const start = performance.now();
      expect((await ctr(d.socket, ['namespaces', 'create', 'redos-after'])).code).toBe(0);
      while (!out.includes('"name":"redos-after"')) {
        expect(performance.now() - start, out).toBeLessThan(1000);
        await new Promise((r) => setTimeout(r, 10));
      }
      // The matching long name came through; the non-matching one did not.
      const imageLines = out.split('\n').filter((l) => l.includes('/images/create'));
      expect(imageLines).toHaveLength(1);
      expect(imageLines[0]).toContain(`"name":"${'a'.repeat(10_000)}"`);
    } finally {
      child.kill('SIGINT');
    }
  });

  it('a filter longer than the cap is refused as invalid argument, quoting only its start', async () => {
    const ls = await ctr(d.socket, ['images', 'ls', `name~=${'a'.repeat(20_000)}`], { timeoutMs: 30_000 });
    expect(ls.code).not.toBe(0);
    expect(ls.stderr).toContain('filter longer than 16384 characters: invalid argument');
    expect(ls.stderr.length).toBeLessThan(1000);
  });
});
