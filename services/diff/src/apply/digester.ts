import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/** Incremental digests of one or more streams, read back as hex once every stream has ended. */
export interface Digester {
  /** Adds `chunk` to stream `i`. May return a promise: the caller waits before adding more. */
  update(i: number, chunk: Buffer): Promise<void> | undefined;
  digests(): Promise<string[]>;
  /** Releases the digester without reading it (after a failure). Never throws. */
  close(): Promise<void>;
}

/** Digests on the calling thread. */
export function inlineDigester(algorithms: readonly string[]): Digester {
  const hashes: Hash[] = algorithms.map((a) => createHash(a));
  return {
    update(i, chunk) {
      hashes[i]?.update(chunk);
      return undefined;
    },
    digests: async () => hashes.map((h) => h.digest('hex')),
    close: async () => undefined,
  };
}

// CommonJS: eval'd workers are not modules. Chunks arrive through a shared ring of slots; each message
// names a slot, and the slot number is sent back once its bytes are digested.
const workerSource = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const hashes = workerData.algorithms.map((a) => createHash(a));
const ring = new Uint8Array(workerData.ring);
const slotBytes = workerData.slotBytes;
parentPort.on('message', (m) => {
  if (m === null) {
    parentPort.postMessage(hashes.map((h) => h.digest('hex')));
    return;
  }
  const start = m.slot * slotBytes;
  hashes[m.i].update(ring.subarray(start, start + m.length));
  parentPort.postMessage(m.slot);
});
`;

const slotBytes = 1 << 20;
const slots = 16;

/**
 * Digests on a worker thread, so hashing runs beside parsing and extraction instead of in line with them
 * (sha256 costs about as much as all the rest on the main thread). Chunks are copied into a ring of shared
 * slots (one memcpy, no allocation) and the caller keeps its buffer; when every slot is taken, `update`
 * returns a promise to wait on.
 */
export function workerDigester(algorithms: readonly string[]): Digester {
  const ring = new SharedArrayBuffer(slotBytes * slots);
  const view = new Uint8Array(ring);
  const worker = new Worker(workerSource, { eval: true, workerData: { algorithms: [...algorithms], ring, slotBytes } });
  const free: number[] = Array.from({ length: slots }, (_, i) => i);
  let failure: Error | undefined;
  // Every update waiting for a slot, oldest first: several streams (Diff.Apply's blob and layer) may wait at once,
  // and each must be woken, or the one left behind never finishes.
  const waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  let result: { resolve: (d: string[]) => void; reject: (e: Error) => void } | undefined;
  const fail = (e: Error): void => {
    failure ??= e;
    for (const w of waiters.splice(0)) w.reject(e);
    result?.reject(e);
    result = undefined;
  };
  worker.on('message', (m: number | string[]) => {
    if (typeof m === 'number') {
      free.push(m);
      waiters.shift()?.resolve();
    } else {
      result?.resolve(m);
      result = undefined;
    }
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`digest worker exited (${code})`)));
  const slotFree = (): Promise<void> =>
    failure
      ? Promise.reject(failure)
      : new Promise<void>((resolve, reject) => {
          waiters.push({ resolve, reject });
        });
  const send = (i: number, piece: Buffer): boolean => {
    const slot = free.pop();
    if (slot === undefined) return false;
    view.set(piece, slot * slotBytes);
    worker.postMessage({ i, slot, length: piece.length });
    return true;
  };
  const sendAll = async (i: number, chunk: Buffer, from: number): Promise<void> => {
    for (let off = from; off < chunk.length; ) {
      const piece = chunk.subarray(off, off + slotBytes);
      if (send(i, piece)) off += piece.length;
      else await slotFree();
    }
  };
  return {
    update(i, chunk) {
      if (failure) throw failure;
      for (let off = 0; off < chunk.length; ) {
        const piece = chunk.subarray(off, off + slotBytes);
        if (!send(i, piece)) return sendAll(i, chunk, off);
        off += piece.length;
      }
      return undefined;
    },
    async digests() {
      if (failure) throw failure;
      const out = new Promise<string[]>((resolve, reject) => {
        result = { resolve, reject };
      });
      worker.postMessage(null);
      try {
        return await out;
      } finally {
        await worker.terminate();
      }
    },
    async close() {
      await worker.terminate().catch(() => undefined);
    },
  };
}
