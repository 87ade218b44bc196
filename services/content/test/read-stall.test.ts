import { randomBytes } from 'node:crypto';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { ReadContentResponse } from '@berth/proto/containerd/services/content/v1/content';
import { tempDir } from '@berth/testing/tmp';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, md, sha256, startHarness, writeBlob } from './harness.js';

/** This process's open descriptors on `path`. */
function openFds(path: string): number {
  let n = 0;
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === path) n++;
    } catch {
      // Closed between the listing and the readlink.
    }
  }
  return n;
}

const until = async (what: string, ok: () => boolean, ms: number): Promise<void> => {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

/**
 * A Read whose client stops reading (keeps the call open, consumes nothing) must not hold its blob open for as
 * long as the connection lives: once the server has waited `stallMs` for the client to take more, the call
 * ends and the file is closed.
 */
describe('Content.Read: a client that stops reading', () => {
  const stallMs = 400;
  const dir = tempDir('berth-content-rs-');
  let h: Harness;
  const ns = `rs-${process.pid}`;
  const data = randomBytes(64 << 20);
  const digest = sha256(data);
  const blob = join(dir.path, 'blobs', 'sha256', digest.slice('sha256:'.length));

  beforeAll(async () => {
    h = await startHarness({ kind: 'fs', root: dir.path }, undefined, undefined, { stallMs });
    await writeBlob(h.client, ns, `rs-${Date.now()}`, data, { expected: digest });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
    await dir.remove();
  });

  it('closes the blob and ends the call once the client has read nothing for the stall timeout', async () => {
    const call = h.client.read({ digest, offset: 0, size: 0 }, md(ns));
    let received = 0;
    let status: grpc.StatusObject | undefined;
    call.on('status', (s: grpc.StatusObject) => {
      status = s;
    });
    call.on('error', () => undefined);
    // Take one message, then stop: the client's buffers and the flow-control windows fill and the server's
    // writes stop draining.
    await new Promise<void>((resolve) => {
      call.once('data', (r: ReadContentResponse) => {
        received += r.data.length;
        call.pause();
        resolve();
      });
    });
    await until('the blob to be open', () => openFds(blob) > 0, 5_000);
    const paused = Date.now();

    await until('the blob to be closed', () => openFds(blob) === 0, stallMs + 5_000);
    const closedAfter = Date.now() - paused;
    expect(closedAfter).toBeGreaterThanOrEqual(stallMs - 50);

    await until('the call to end', () => status !== undefined, 5_000);
    expect([grpc.status.DEADLINE_EXCEEDED, grpc.status.CANCELLED]).toContain(status?.code);
    expect(received).toBeLessThan(data.length);
  }, 30_000);

  it('a client that keeps reading, however slowly, is not cut off', async () => {
    const size = 32 << 20;
    const call = h.client.read({ digest, offset: 0, size }, md(ns));
    const chunks: Buffer[] = [];
    // Each 1 MiB message taken after a pause: the server waits for its client on most writes, never for long.
    for await (const r of call as AsyncIterable<ReadContentResponse>) {
      chunks.push(r.data);
      await new Promise((res) => setTimeout(res, 15));
    }
    expect(sha256(Buffer.concat(chunks))).toBe(sha256(data.subarray(0, size)));
  }, 30_000);
});
