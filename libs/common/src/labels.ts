import { invalidArgument } from './errors.js';

/** containerd's limit on one label (`labels/validate.go`): key plus value, in bytes. */
export const maxLabelSize = 4096;

/** Throws invalid_argument, with containerd's message, for the first label over the size limit. */
export function validateLabels(labels: Readonly<Record<string, string>> | undefined): void {
  if (!labels) return;
  for (const [key, value] of Object.entries(labels)) {
    if (Buffer.byteLength(key) + Buffer.byteLength(value) > maxLabelSize) {
      throw invalidArgument(
        `label key and value greater than maximum size (${maxLabelSize} bytes), key: ${key.slice(0, 10)}`,
      );
    }
  }
}

/** Well-known labels that form the garbage collector's reference graph and client defaults. */
export const Labels = {
  gcRoot: 'containerd.io/gc.root',
  gcRefContentPrefix: 'containerd.io/gc.ref.content',
  gcRefSnapshotPrefix: 'containerd.io/gc.ref.snapshot.',
  gcExpire: 'containerd.io/gc.expire',
  gcFlat: 'containerd.io/gc.flat',
  uncompressed: 'containerd.io/uncompressed',
  defaultSnapshotter: 'containerd.io/defaults/snapshotter',
  defaultRuntime: 'containerd.io/defaults/runtime',
} as const;

/** containerd never stores a label (or annotation) with an empty value: setting one to "" removes it. */
export function withoutEmpty(m: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(m ?? {})) if (v !== '') out[k] = v;
  return out;
}
