/**
 * Test images, built in memory and pushed to a registry with the distribution API: busybox (from
 * busybox-static), a multi-layer image covering what unpack must get right (whiteouts, an opaque
 * directory, hard links, symlinks, modes, owners, gzip/zstd/uncompressed layers), a large many-file
 * image for benchmarks, multi-platform indexes, and OCI or Docker schema 2 media types.
 *
 * Every built image carries the tree its unpack must produce (`expected`), for `compareTree`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { chainIds, MediaType, type Platform, sha256 } from '@berth/common/oci';
import { type ExpectedTree, expectedTree, type LayerEntry, layerTar, withParents } from './image-tree.js';

export {
  compareTree,
  defaultMtime,
  type ExpectedNode,
  type ExpectedTree,
  expectedTree,
  type LayerEntry,
} from './image-tree.js';

export type { Platform };

/** The platform this process runs on, in OCI terms (x64 → amd64, arm64 → arm64/v8, arm → arm/v7). */
export function hostPlatform(): Platform {
  const arch = process.arch;
  if (arch === 'x64') return { os: 'linux', architecture: 'amd64' };
  if (arch === 'arm64') return { os: 'linux', architecture: 'arm64', variant: 'v8' };
  if (arch === 'arm') return { os: 'linux', architecture: 'arm', variant: 'v7' };
  if (arch === 'ia32') return { os: 'linux', architecture: '386' };
  return { os: 'linux', architecture: arch };
}

export type Compression = 'gzip' | 'zstd' | 'none';
export type ManifestFormat = 'oci' | 'docker';

export interface LayerSpec {
  readonly entries: readonly LayerEntry[];
  /** Default gzip. Docker schema 2 images allow gzip only. */
  readonly compression?: Compression;
}

export interface ImageSpec {
  readonly layers: readonly LayerSpec[];
  /** Default: the host platform. */
  readonly platform?: Platform;
  /** The image config's `config` (Cmd, Env, …). */
  readonly config?: Readonly<Record<string, unknown>>;
  /** Default `oci`. */
  readonly format?: ManifestFormat;
}

/** A content-addressed blob with the descriptor that points at it. */
export interface Blob {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly data: Buffer;
}

export interface BuiltLayer extends Blob {
  /** sha256 of the uncompressed tar: the config's rootfs.diff_ids entry. */
  readonly diffId: string;
  readonly uncompressedSize: number;
}

export interface BuiltImage {
  readonly manifest: Blob;
  readonly config: Blob;
  readonly layers: readonly BuiltLayer[];
  readonly platform: Platform;
  /** The root filesystem a correct unpack produces. */
  readonly expected: ExpectedTree;
  /** chain IDs of the layers, bottom first (the last one names the unpacked snapshot). */
  readonly chainIds: readonly string[];
  /** Files, directories and symlinks in `expected`, and the bytes of its files. */
  readonly stats: { readonly entries: number; readonly fileBytes: number };
}

export interface BuiltIndex {
  readonly index: Blob;
  readonly images: readonly BuiltImage[];
}

function blob(mediaType: string, data: Buffer): Blob {
  return { mediaType, digest: sha256(data), size: data.length, data };
}

function jsonBlob(mediaType: string, value: unknown): Blob {
  return blob(mediaType, Buffer.from(JSON.stringify(value)));
}

function zstd(data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn('zstd', ['-q', '-c', '-3'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    child.once('error', reject);
    child.once('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`zstd exited ${code}: ${err}`)),
    );
    child.stdin.end(data);
  });
}

async function buildLayer(
  spec: LayerSpec,
  format: ManifestFormat,
  entries: readonly LayerEntry[],
): Promise<BuiltLayer> {
  const tar = await layerTar(entries);
  const compression = spec.compression ?? 'gzip';
  if (format === 'docker' && compression !== 'gzip') throw new Error('Docker schema 2 layers must be gzip');
  const data = compression === 'gzip' ? gzipSync(tar, { level: 6 }) : compression === 'zstd' ? await zstd(tar) : tar;
  const mediaType =
    format === 'docker'
      ? MediaType.dockerLayerGzip
      : compression === 'gzip'
        ? MediaType.ociLayerGzip
        : compression === 'zstd'
          ? MediaType.ociLayerZstd
          : MediaType.ociLayer;
  return { ...blob(mediaType, data), diffId: sha256(tar), uncompressedSize: tar.length };
}

/** Builds the layers, config and manifest of one image. */
export async function buildImage(spec: ImageSpec): Promise<BuiltImage> {
  const format = spec.format ?? 'oci';
  const platform = spec.platform ?? hostPlatform();
  const layers: BuiltLayer[] = [];
  const trees: LayerEntry[][] = [];
  for (const l of spec.layers) {
    const entries = withParents(l.entries, expectedTree(trees));
    trees.push(entries);
    layers.push(await buildLayer(l, format, entries));
  }
  const config = jsonBlob(format === 'docker' ? MediaType.dockerConfig : MediaType.ociConfig, {
    created: '2024-01-01T00:00:00Z',
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: spec.config ?? {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: '@berth/testing' })),
  });
  const manifest = jsonBlob(format === 'docker' ? MediaType.dockerManifest : MediaType.ociManifest, {
    schemaVersion: 2,
    mediaType: format === 'docker' ? MediaType.dockerManifest : MediaType.ociManifest,
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  });
  const expected = expectedTree(trees);
  let fileBytes = 0;
  for (const n of expected.values()) if (n.kind === 'file') fileBytes += n.size;
  return {
    manifest,
    config,
    layers,
    platform,
    expected,
    chainIds: chainIds(layers.map((l) => l.diffId)),
    stats: { entries: expected.size, fileBytes },
  };
}

/** An index (OCI) or manifest list (Docker) over `images`, in the given order. */
export function buildIndex(images: readonly BuiltImage[], format: ManifestFormat = 'oci'): BuiltIndex {
  const mediaType = format === 'docker' ? MediaType.dockerManifestList : MediaType.ociIndex;
  const index = jsonBlob(mediaType, {
    schemaVersion: 2,
    mediaType,
    manifests: images.map((i) => ({
      mediaType: i.manifest.mediaType,
      digest: i.manifest.digest,
      size: i.manifest.size,
      platform: {
        architecture: i.platform.architecture,
        os: i.platform.os,
        ...(i.platform.variant ? { variant: i.platform.variant } : {}),
      },
    })),
  });
  return { index, images };
}

/** Where to push: a registry from `startRegistry` (or anything with a host and optional auth headers). */
export interface PushTarget {
  readonly host: string;
  pushHeaders?(repository: string): Promise<Record<string, string>>;
}

async function check(res: Response, what: string, ok: readonly number[]): Promise<void> {
  if (ok.includes(res.status)) return;
  throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
}

async function pushBlob(
  target: PushTarget,
  repository: string,
  b: Blob,
  headers: Record<string, string>,
): Promise<void> {
  const base = `http://${target.host}/v2/${repository}`;
  const head = await fetch(`${base}/blobs/${b.digest}`, { method: 'HEAD', headers });
  if (head.status === 200) return;
  const start = await fetch(`${base}/blobs/uploads/`, { method: 'POST', headers });
  await check(start, `start upload of ${b.digest}`, [202]);
  await start.arrayBuffer();
  const location = new URL(start.headers.get('location') ?? '', `http://${target.host}`);
  location.searchParams.set('digest', b.digest);
  const put = await fetch(location, {
    method: 'PUT',
    headers: { ...headers, 'content-type': 'application/octet-stream', 'content-length': String(b.size) },
    body: b.data,
  });
  await check(put, `upload of ${b.digest}`, [201]);
  await put.arrayBuffer();
}

async function pushManifest(
  target: PushTarget,
  repository: string,
  reference: string,
  b: Blob,
  headers: Record<string, string>,
): Promise<void> {
  const res = await fetch(`http://${target.host}/v2/${repository}/manifests/${reference}`, {
    method: 'PUT',
    headers: { ...headers, 'content-type': b.mediaType },
    body: b.data,
  });
  await check(res, `manifest ${repository}:${reference}`, [201]);
  await res.arrayBuffer();
}

/**
 * Pushes an image or an index (with all its images) as `<host>/<repository>:<tag>` and returns the
 * full reference. Blobs the registry already has are skipped.
 */
export async function pushImage(
  target: PushTarget,
  repository: string,
  tag: string,
  image: BuiltImage | BuiltIndex,
): Promise<string> {
  const headers = (await target.pushHeaders?.(repository)) ?? {};
  const images = 'index' in image ? image.images : [image];
  for (const img of images) {
    await Promise.all(img.layers.map((l) => pushBlob(target, repository, l, headers)));
    await pushBlob(target, repository, img.config, headers);
    if ('index' in image) await pushManifest(target, repository, img.manifest.digest, img.manifest, headers);
  }
  const top = 'index' in image ? image.index : image.manifest;
  await pushManifest(target, repository, tag, top, headers);
  return `${target.host}/${repository}:${tag}`;
}

// ---------------------------------------------------------------------------------------------------------
// The images themselves.

/** busybox from Debian's busybox-static: /bin/busybox plus one absolute symlink per applet, /etc/passwd and /etc/group. */
export function busyboxLayer(binary = '/bin/busybox'): LayerEntry[] {
  const applets = execFileSync(binary, ['--list-full'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && l !== 'bin/busybox');
  const entries: LayerEntry[] = [
    { kind: 'dir', path: 'bin' },
    { kind: 'file', path: 'bin/busybox', data: readFileSync(binary), mode: 0o755 },
    { kind: 'dir', path: 'etc' },
    {
      kind: 'file',
      path: 'etc/passwd',
      data: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
    },
    { kind: 'file', path: 'etc/group', data: 'root:x:0:\nnogroup:x:65534:\n' },
    { kind: 'dir', path: 'tmp', mode: 0o1777 },
    { kind: 'dir', path: 'root', mode: 0o700 },
  ];
  for (const a of [...new Set(applets)].sort()) entries.push({ kind: 'symlink', path: a, target: '/bin/busybox' });
  return entries;
}

export function busyboxImage(opts: { format?: ManifestFormat; platform?: Platform } = {}): Promise<BuiltImage> {
  return buildImage({
    layers: [{ entries: busyboxLayer() }],
    config: { Cmd: ['sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
    ...opts,
  });
}

/** Deterministic pseudo-random bytes (xorshift32), so the same spec always gives the same digests. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

function randomBytes(n: number, seed: number): Buffer {
  const next = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE(next(), i);
  for (let i = n - (n % 4); i < n; i++) b[i] = next() & 0xff;
  return b;
}

/**
 * Four layers that exercise unpack: gzip, uncompressed and zstd layers; whiteouts of a file and of a
 * directory, an opaque directory, a file replaced by a directory and a directory by a file, hard links,
 * relative/absolute/dangling symlinks, setuid and sticky modes, non-root owners, a long path, odd names.
 */
export function multiLayerImage(opts: { format?: ManifestFormat; platform?: Platform } = {}): Promise<BuiltImage> {
  const docker = opts.format === 'docker';
  const l1: LayerEntry[] = [
    { kind: 'dir', path: 'etc' },
    { kind: 'file', path: 'etc/hostname', data: 'layer-one\n' },
    { kind: 'file', path: 'etc/passwd', data: 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' },
    { kind: 'symlink', path: 'etc/hostname.link', target: 'hostname' },
    { kind: 'dir', path: 'tmp', mode: 0o1777 },
    { kind: 'dir', path: 'usr/bin' },
    { kind: 'file', path: 'usr/bin/tool', data: randomBytes(70_000, 1), mode: 0o4755 },
    { kind: 'symlink', path: 'usr/bin/tool-abs', target: '/usr/bin/tool' },
    { kind: 'symlink', path: 'usr/bin/dangling', target: '/does/not/exist' },
    { kind: 'dir', path: 'home/user', mode: 0o750, uid: 1000, gid: 1000 },
    {
      kind: 'file',
      path: 'home/user/notes.txt',
      data: 'private\n',
      mode: 0o600,
      uid: 1000,
      gid: 1000,
      mtime: 1_600_000_000,
    },
    { kind: 'dir', path: 'data' },
    { kind: 'file', path: 'data/keep.txt', data: 'kept across layers\n' },
    { kind: 'hardlink', path: 'data/keep.hardlink', target: 'data/keep.txt' },
    { kind: 'file', path: 'data/remove-me.txt', data: 'deleted by layer 2\n' },
    { kind: 'dir', path: 'data/dir-to-remove/sub' },
    { kind: 'file', path: 'data/dir-to-remove/a', data: 'a' },
    { kind: 'file', path: 'data/dir-to-remove/sub/b', data: 'b' },
    { kind: 'file', path: 'data/file-becomes-dir', data: 'a file in layer 1' },
    { kind: 'dir', path: 'data/dir-becomes-file' },
    { kind: 'file', path: 'data/dir-becomes-file/child', data: 'gone when the dir becomes a file' },
    { kind: 'dir', path: 'opq/sub' },
    { kind: 'file', path: 'opq/old1', data: 'hidden by the opaque marker' },
    { kind: 'file', path: 'opq/sub/old2', data: 'hidden too' },
    { kind: 'file', path: 'var/lib/big.bin', data: randomBytes(1_500_000, 2), mode: 0o640, uid: 0, gid: 42 },
  ];
  const l2: LayerEntry[] = [
    { kind: 'whiteout', path: 'data/remove-me.txt' },
    { kind: 'whiteout', path: 'data/dir-to-remove' },
    { kind: 'dir', path: 'opq', mode: 0o755 },
    { kind: 'opaque', path: 'opq' },
    { kind: 'file', path: 'opq/new', data: 'only this survives in opq' },
    { kind: 'file', path: 'etc/hostname', data: 'layer-two\n', mode: 0o644 },
    { kind: 'dir', path: 'data', mode: 0o700, uid: 1000, gid: 1000 },
    { kind: 'dir', path: 'data/file-becomes-dir' },
    { kind: 'file', path: 'data/file-becomes-dir/inside', data: 'now a directory' },
    { kind: 'file', path: 'data/dir-becomes-file', data: 'now a file', mode: 0o444 },
    { kind: 'file', path: 'srv/one', data: 'one', uid: 65534, gid: 65534 },
    { kind: 'hardlink', path: 'srv/two', target: 'srv/one' },
    { kind: 'hardlink', path: 'srv/three', target: 'srv/one' },
  ];
  const longDir = `deep/${Array.from({ length: 12 }, (_, i) => `level-${i}-directory`).join('/')}`;
  const l3: LayerEntry[] = [
    { kind: 'whiteout', path: 'usr/bin/tool-abs' },
    { kind: 'whiteout', path: 'home/user/notes.txt' },
    { kind: 'file', path: 'usr/bin/dangling', data: 'the dangling symlink became a file\n', mode: 0o755 },
    { kind: 'dir', path: longDir },
    {
      kind: 'file',
      path: `${longDir}/a-file-with-a-long-name-beyond-the-ustar-limit-of-one-hundred-bytes.txt`,
      data: 'deep',
    },
    { kind: 'file', path: 'names/with space', data: 'space' },
    { kind: 'file', path: 'names/ünïcødé-名前', data: 'unicode' },
    { kind: 'file', path: 'names/empty', data: '' },
    { kind: 'file', path: 'names/.hidden', data: 'dotfile' },
  ];
  const l4: LayerEntry[] = [
    { kind: 'whiteout', path: 'names/empty' },
    { kind: 'file', path: 'etc/motd', data: 'top layer\n' },
  ];
  return buildImage({
    layers: [
      { entries: l1, compression: 'gzip' },
      { entries: l2, compression: docker ? 'gzip' : 'none' },
      { entries: l3, compression: docker ? 'gzip' : 'zstd' },
      { entries: l4, compression: 'gzip' },
    ],
    config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/bin:/bin'] },
    ...opts,
  });
}

export interface ManyFilesOptions {
  /** Total bytes of file content. Default 100 MiB. */
  readonly bytes?: number;
  /** Number of files. Default 20 000. */
  readonly files?: number;
  /** Number of layers (files are spread evenly). Default 5. */
  readonly layers?: number;
  /** Share of the bytes in a few large files (the rest in many small ones). Default 0.2. */
  readonly largeShare?: number;
  readonly format?: ManifestFormat;
  /** A first layer below the many files, e.g. `busyboxLayer()` so that the image's `/bin/true` runs. */
  readonly base?: readonly LayerEntry[];
}

/**
 * A large image shaped like a real distribution image: many small text-like files in nested
 * directories plus a few large ones, spread over several gzip layers. Content compresses about 3:1.
 */
export function manyFilesImage(opts: ManyFilesOptions = {}): Promise<BuiltImage> {
  const bytes = opts.bytes ?? 100 * 1024 * 1024;
  const files = opts.files ?? 20_000;
  const layerCount = opts.layers ?? 5;
  const largeCount = Math.max(1, Math.round(files / 1000));
  const largeBytes = Math.floor(bytes * (opts.largeShare ?? 0.2));
  const smallAvg = Math.max(1, Math.floor((bytes - largeBytes) / (files - largeCount)));
  // Text-like filler: words drawn from a small vocabulary, so gzip finds about the ratio of real files.
  const next = prng(7);
  const words = Array.from({ length: 4096 }, () => Math.floor(next() % 1e9).toString(36));
  const poolParts: string[] = [];
  let poolLen = 0;
  while (poolLen < 8 * 1024 * 1024) {
    const w = words[next() % words.length] ?? 'x';
    poolParts.push(w, next() % 13 === 0 ? '\n' : ' ');
    poolLen += w.length + 1;
  }
  const pool = Buffer.from(poolParts.join(''));
  const content = (i: number, size: number): Buffer => {
    const head = Buffer.from(`file ${i}\n`);
    if (size <= head.length) return head.subarray(0, size);
    const out = Buffer.allocUnsafe(size);
    head.copy(out);
    let at = head.length;
    while (at < size) {
      const off = next() % (pool.length - 65536);
      const n = Math.min(size - at, 65536);
      pool.copy(out, at, off, off + n);
      at += n;
    }
    return out;
  };
  const layers: LayerSpec[] = opts.base ? [{ entries: opts.base }] : [];
  let fileNo = 0;
  for (let l = 0; l < layerCount; l++) {
    const entries: LayerEntry[] = [];
    const inLayer = Math.floor(files / layerCount) + (l < files % layerCount ? 1 : 0);
    for (let k = 0; k < inLayer; k++, fileNo++) {
      const large = fileNo % Math.floor(files / largeCount) === 0;
      const size = large
        ? Math.floor(largeBytes / largeCount)
        : Math.max(0, Math.floor(smallAvg * (0.25 + 1.5 * ((next() % 1000) / 1000))));
      const dir = `usr/layer${l}/d${Math.floor(k / 50) % 40}/s${Math.floor(k / 2000)}`;
      entries.push({
        kind: 'file',
        path: `${dir}/f${fileNo}${large ? '.bin' : '.txt'}`,
        data: content(fileNo, size),
        mode: fileNo % 7 === 0 ? 0o755 : 0o644,
      });
    }
    layers.push({ entries });
  }
  return buildImage({ layers, config: { Cmd: ['/bin/true'] }, ...(opts.format ? { format: opts.format } : {}) });
}

/** A single layer holding one file of `bytes` pseudo-random (incompressible) bytes. */
export function singleLargeFileImage(bytes: number): Promise<BuiltImage> {
  return buildImage({ layers: [{ entries: [{ kind: 'file', path: 'large.bin', data: randomBytes(bytes, 3) }] }] });
}

/**
 * `host` image inside an index next to images for other platforms (listed first, so picking the first
 * entry would be wrong): linux/arm64/v8 or linux/amd64 (whichever is not the host), linux/arm/v7, linux/s390x.
 */
export async function multiPlatformIndex(host: BuiltImage, format: ManifestFormat = 'oci'): Promise<BuiltIndex> {
  const others: Platform[] = [
    host.platform.architecture === 'amd64'
      ? { os: 'linux', architecture: 'arm64', variant: 'v8' }
      : { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm', variant: 'v7' },
    { os: 'linux', architecture: 's390x' },
  ];
  const foreign = await Promise.all(
    others.map((p) =>
      buildImage({
        platform: p,
        format,
        layers: [
          {
            entries: [
              {
                kind: 'file',
                path: 'PLATFORM',
                data: `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}\n`,
              },
            ],
          },
        ],
      }),
    ),
  );
  return buildIndex([...foreign, host], format);
}
