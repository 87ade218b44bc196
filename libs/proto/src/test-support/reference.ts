// Test-only helpers (excluded from the tsc build, see tsconfig.json): locate containerd's
// reference .proto files (Debian golang-github-containerd-containerd-dev) and compile
// descriptor sets / encode messages with them.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromBinary } from '@bufbuild/protobuf';
import { type FileDescriptorSet, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';

export const PKG_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GOCODE = process.env.BERTH_GOCODE_SRC ?? '/usr/share/gocode/src';
export const PROTOC = process.env.BERTH_PROTOC ?? '/usr/bin/protoc';
export const SKIP = process.env.BERTH_SKIP_WIRE_COMPAT === '1';

const CTRD = 'github.com/containerd/containerd';

/** Reference files (relative to GOCODE) whose messages/services we must mirror exactly. */
export const REFERENCE_FILES: readonly string[] = [
  `${CTRD}/api/types/mount.proto`,
  `${CTRD}/api/types/descriptor.proto`,
  `${CTRD}/api/types/platform.proto`,
  `${CTRD}/api/types/metrics.proto`,
  `${CTRD}/api/types/task/task.proto`,
  ...[
    'containers/v1/containers',
    'content/v1/content',
    'diff/v1/diff',
    'events/v1/events',
    'images/v1/images',
    'introspection/v1/introspection',
    'leases/v1/leases',
    'namespaces/v1/namespace',
    'snapshots/v1/snapshots',
    'tasks/v1/tasks',
    'version/v1/version',
    'ttrpc/events/v1/events',
  ].map((p) => `${CTRD}/api/services/${p}.proto`),
  ...['container', 'content', 'image', 'namespace', 'snapshot', 'task'].map((p) => `${CTRD}/api/events/${p}.proto`),
  `${CTRD}/runtime/v2/runc/options/oci.proto`,
  'github.com/containerd/cgroups/stats/v1/metrics.proto',
  'github.com/containerd/cgroups/v2/stats/metrics.proto',
  // Resolved through the googleapis include below, under the name containerd imports it by.
  'google/rpc/status.proto',
];

/** Include root for `google/rpc/status.proto` (imported by introspection.proto). */
const GOOGLEAPIS = join(GOCODE, 'github.com/gogo/googleapis');

/**
 * grpc.health.v1 reference. It only exists as a Debian "missing-sources" copy inside
 * golang-google-grpc-dev, so it is compared when present and reported as skipped otherwise.
 */
export const HEALTH_INCLUDE = join(GOCODE, 'google.golang.org/grpc/debian/missing-sources/grpc/grpc-proto/master');
export const HEALTH_FILE = 'grpc/health/v1/health.proto';

export function protocIncludes(): string[] {
  return [
    `-I${GOCODE}`,
    `-I${join(GOCODE, 'github.com/gogo/protobuf')}`, // gogoproto/gogo.proto
    `-I${GOOGLEAPIS}`, // google/rpc/status.proto
    '-I/usr/include', // google/protobuf/*.proto (libprotobuf-dev)
  ];
}

function referencePath(f: string): string {
  return f.startsWith('google/rpc/') ? join(GOOGLEAPIS, f) : join(GOCODE, f);
}

/** Returns a human-readable reason if the reference toolchain/protos are missing, else undefined. */
export function missingReference(): string | undefined {
  if (!existsSync(PROTOC)) return `protoc not found at ${PROTOC} (apt-get install protobuf-compiler libprotobuf-dev)`;
  if (!existsSync('/usr/include/google/protobuf/any.proto'))
    return 'google/protobuf well-known .proto files missing from /usr/include (apt-get install libprotobuf-dev)';
  const missing = REFERENCE_FILES.filter((f) => !existsSync(referencePath(f)));
  if (missing.length > 0) {
    return `containerd reference protos missing under ${GOCODE} (apt-get install golang-github-containerd-containerd-dev): ${missing.join(', ')}`;
  }
  return undefined;
}

export function run(cmd: string, args: string[], opts: { cwd?: string; input?: Uint8Array | string } = {}): Buffer {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, input: opts.input, maxBuffer: 64 << 20 });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}):\n${r.stderr.toString()}`);
  return r.stdout;
}

function withTmp<T>(fn: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'berth-wire-'));
  try {
    return fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function healthReferencePresent(): boolean {
  return existsSync(join(HEALTH_INCLUDE, HEALTH_FILE));
}

/** Descriptor set of containerd's reference protos (plus grpc health if installed), compiled with protoc. */
export function buildReferenceSet(): FileDescriptorSet {
  return withTmp((dir) => {
    const out = join(dir, 'ref.binpb');
    const args = [...protocIncludes(), '--include_imports', `--descriptor_set_out=${out}`, ...REFERENCE_FILES];
    if (healthReferencePresent()) args.push(`-I${HEALTH_INCLUDE}`, HEALTH_FILE);
    run(PROTOC, args);
    return fromBinary(FileDescriptorSetSchema, readFileSync(out));
  });
}

/** Descriptor set of our own protos (libs/proto/proto), compiled with the pinned buf. */
export function buildOurSet(): FileDescriptorSet {
  return withTmp((dir) => {
    const out = join(dir, 'ours.binpb');
    run(join(PKG_DIR, 'node_modules', '.bin', 'buf'), ['build', '--as-file-descriptor-set', '-o', out], {
      cwd: PKG_DIR,
    });
    return fromBinary(FileDescriptorSetSchema, readFileSync(out));
  });
}

/** `protoc --encode=<type>` a text-format message against containerd's reference protos. */
export function protocEncode(type: string, file: string, text: string): Buffer {
  return run(PROTOC, [...protocIncludes(), `--encode=${type}`, file], { input: text });
}

/** `protoc --decode=<type>` binary bytes into text format using containerd's reference protos. */
export function protocDecode(type: string, file: string, bytes: Uint8Array): string {
  return run(PROTOC, [...protocIncludes(), `--decode=${type}`, file], { input: bytes }).toString();
}

export const REF = {
  namespaces: `${CTRD}/api/services/namespaces/v1/namespace.proto`,
  content: `${CTRD}/api/services/content/v1/content.proto`,
  containers: `${CTRD}/api/services/containers/v1/containers.proto`,
} as const;
