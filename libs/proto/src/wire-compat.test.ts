// Wire-compatibility guard: every message, enum and service in containerd 1.6's reference protos
// (Debian golang-github-containerd-containerd-dev, plus containerd/cgroups, runc options,
// google.rpc.Status and grpc.health.v1) must exist in our proto/ tree with the same fully-qualified
// name, the same fields (name, number, type, type_name, label, oneof membership), the same enum
// values and the same methods (input/output type, streaming kinds).
//
// The reference protos are REQUIRED: when they are missing this test fails with an explanation.
// Set BERTH_SKIP_WIRE_COMPAT=1 to skip it deliberately.
import { clone, create, isFieldSet } from '@bufbuild/protobuf';
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldDescriptorProtoSchema,
  type FileDescriptorSet,
  FileDescriptorSetSchema,
  type ServiceDescriptorProto,
} from '@bufbuild/protobuf/wkt';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildOurSet, buildReferenceSet, missingReference, SKIP } from './test-support/reference.js';

interface Index {
  messages: Map<string, { file: string; msg: DescriptorProto }>;
  enums: Map<string, { file: string; en: EnumDescriptorProto }>;
  services: Map<string, { file: string; svc: ServiceDescriptorProto }>;
}

/** Reference files that only carry codegen options; they define nothing on the wire. */
function isToolingFile(name: string): boolean {
  return name.startsWith('google/protobuf/') || name.startsWith('gogoproto/') || name.includes('/protobuf/plugin/');
}

function indexSet(set: FileDescriptorSet, skipTooling: boolean): Index {
  const idx: Index = { messages: new Map(), enums: new Map(), services: new Map() };
  for (const file of set.file) {
    if (skipTooling && isToolingFile(file.name)) continue;
    const pkg = file.package ? `.${file.package}` : '';
    const addMessage = (prefix: string, msg: DescriptorProto): void => {
      const fqn = `${prefix}.${msg.name}`;
      idx.messages.set(fqn, { file: file.name, msg });
      for (const n of msg.nestedType) addMessage(fqn, n);
      for (const e of msg.enumType) idx.enums.set(`${fqn}.${e.name}`, { file: file.name, en: e });
    };
    for (const m of file.messageType) addMessage(pkg, m);
    for (const e of file.enumType) idx.enums.set(`${pkg}.${e.name}`, { file: file.name, en: e });
    for (const s of file.service) idx.services.set(`${pkg}.${s.name}`, { file: file.name, svc: s });
  }
  return idx;
}

function describeField(f: FieldDescriptorProto): string {
  const oneof = isFieldSet(f, FieldDescriptorProtoSchema.field.oneofIndex) ? ` oneof#${f.oneofIndex}` : '';
  const opt = f.proto3Optional ? ' proto3_optional' : '';
  return `${f.name}=${f.number} ${FieldDescriptorProto_Label[f.label]} ${FieldDescriptorProto_Type[f.type]}${f.typeName ? ` ${f.typeName}` : ''}${oneof}${opt}`;
}

/** Returns a list of human-readable differences; empty means wire-compatible. */
export function compareSets(reference: FileDescriptorSet, ours: FileDescriptorSet): string[] {
  const ref = indexSet(reference, true);
  const our = indexSet(ours, false);
  const issues: string[] = [];

  for (const [fqn, { file, msg }] of ref.messages) {
    const mine = our.messages.get(fqn);
    if (!mine) {
      issues.push(`message ${fqn} (from ${file}) is missing`);
      continue;
    }
    if (Boolean(msg.options?.mapEntry) !== Boolean(mine.msg.options?.mapEntry))
      issues.push(`message ${fqn}: map_entry differs`);
    const refFields = new Map(msg.field.map((f) => [f.number, f]));
    const ourFields = new Map(mine.msg.field.map((f) => [f.number, f]));
    for (const [num, rf] of refFields) {
      const of = ourFields.get(num);
      if (!of) issues.push(`message ${fqn}: field ${describeField(rf)} is missing`);
      else if (describeField(of) !== describeField(rf))
        issues.push(`message ${fqn}: field ${num} is "${describeField(of)}", containerd has "${describeField(rf)}"`);
    }
    for (const [num, of] of ourFields) {
      if (!refFields.has(num)) issues.push(`message ${fqn}: extra field ${describeField(of)} not in containerd`);
    }
    const oneofs = (m: DescriptorProto): string => m.oneofDecl.map((o) => o.name).join(',');
    if (oneofs(msg) !== oneofs(mine.msg))
      issues.push(`message ${fqn}: oneofs [${oneofs(mine.msg)}] != [${oneofs(msg)}]`);
  }

  for (const [fqn, { file, en }] of ref.enums) {
    const mine = our.enums.get(fqn);
    if (!mine) {
      issues.push(`enum ${fqn} (from ${file}) is missing`);
      continue;
    }
    const vals = (e: EnumDescriptorProto): string =>
      e.value
        .map((v) => `${v.name}=${v.number}`)
        .sort()
        .join(' ');
    if (vals(en) !== vals(mine.en)) issues.push(`enum ${fqn}: values [${vals(mine.en)}] != containerd [${vals(en)}]`);
  }

  for (const [fqn, { file, svc }] of ref.services) {
    const mine = our.services.get(fqn);
    if (!mine) {
      issues.push(`service ${fqn} (from ${file}) is missing`);
      continue;
    }
    const sig = (s: ServiceDescriptorProto): Map<string, string> =>
      new Map(
        s.method.map((m) => [
          m.name,
          `(${m.clientStreaming ? 'stream ' : ''}${m.inputType}) returns (${m.serverStreaming ? 'stream ' : ''}${m.outputType})`,
        ]),
      );
    const refM = sig(svc);
    const ourM = sig(mine.svc);
    for (const [name, s] of refM) {
      const o = ourM.get(name);
      if (o === undefined) issues.push(`service ${fqn}: method ${name}${s} is missing`);
      else if (o !== s) issues.push(`service ${fqn}: method ${name}${o} != containerd ${name}${s}`);
    }
    for (const name of ourM.keys())
      if (!refM.has(name)) issues.push(`service ${fqn}: extra method ${name} not in containerd`);
  }
  return issues;
}

const missing = missingReference();

describe.skipIf(SKIP)('wire compatibility with containerd 1.6 protos', () => {
  let reference: FileDescriptorSet;
  let ours: FileDescriptorSet;

  beforeAll(() => {
    if (missing) {
      throw new Error(`${missing}. Install it, or set BERTH_SKIP_WIRE_COMPAT=1 to skip this check on purpose.`);
    }
    reference = buildReferenceSet();
    ours = buildOurSet();
  });

  it('reference protos are installed', () => {
    expect(missing, missing).toBeUndefined();
  });

  it('covers a sane amount of the reference API', () => {
    const ref = indexSet(reference, true);
    // containerd 1.6.20 + cgroups + runc options + google.rpc: ~240 messages and 14+ services.
    expect(ref.messages.size).toBeGreaterThan(200);
    expect(ref.services.size).toBeGreaterThanOrEqual(12);
    for (const s of [
      '.containerd.services.containers.v1.Containers',
      '.containerd.services.content.v1.Content',
      '.containerd.services.diff.v1.Diff',
      '.containerd.services.events.v1.Events',
      '.containerd.services.images.v1.Images',
      '.containerd.services.introspection.v1.Introspection',
      '.containerd.services.leases.v1.Leases',
      '.containerd.services.namespaces.v1.Namespaces',
      '.containerd.services.snapshots.v1.Snapshots',
      '.containerd.services.tasks.v1.Tasks',
      '.containerd.services.version.v1.Version',
      '.containerd.services.events.ttrpc.v1.Events',
    ]) {
      expect(ref.services.has(s), s).toBe(true);
    }
    for (const m of [
      '.io.containerd.cgroups.v1.Metrics',
      '.io.containerd.cgroups.v2.Metrics',
      '.containerd.runc.v1.Options',
      '.google.rpc.Status',
    ]) {
      expect(ref.messages.has(m), m).toBe(true);
    }
  });

  it('every containerd message, enum and service matches ours on the wire', () => {
    expect(compareSets(reference, ours)).toEqual([]);
  });

  it('our grpc.health.v1.Health has the standard shape', () => {
    const svc = indexSet(ours, false).services.get('.grpc.health.v1.Health')?.svc;
    expect(svc?.method.map((m) => [m.name, m.inputType, m.outputType, m.clientStreaming, m.serverStreaming])).toEqual([
      ['Check', '.grpc.health.v1.HealthCheckRequest', '.grpc.health.v1.HealthCheckResponse', false, false],
      ['Watch', '.grpc.health.v1.HealthCheckRequest', '.grpc.health.v1.HealthCheckResponse', false, true],
    ]);
  });

  it('the comparison catches a changed field number, type, label and streaming kind', () => {
    const mutate = (fn: (idx: Index) => void): string[] => {
      const copy = clone(FileDescriptorSetSchema, ours);
      fn(indexSet(copy, false));
      return compareSets(reference, copy);
    };
    const writeReq = (idx: Index): DescriptorProto =>
      idx.messages.get('.containerd.services.content.v1.WriteContentRequest')!.msg;

    expect(
      mutate((idx) => void (writeReq(idx).field.find((f) => f.name === 'offset')!.number = 15)).join('\n'),
    ).toMatch(/WriteContentRequest: field offset=5 .* is missing/);
    expect(
      mutate(
        (idx) => void (writeReq(idx).field.find((f) => f.name === 'total')!.type = FieldDescriptorProto_Type.UINT64),
      ).join('\n'),
    ).toMatch(/WriteContentRequest: field 3 is "total=3 OPTIONAL UINT64"/);
    expect(
      mutate(
        (idx) =>
          void (idx.messages.get('.containerd.types.Mount')!.msg.field.find((f) => f.name === 'options')!.label =
            FieldDescriptorProto_Label.OPTIONAL),
      ).join('\n'),
    ).toMatch(/containerd\.types\.Mount: field 4/);
    expect(
      mutate(
        (idx) =>
          void (idx.services
            .get('.containerd.services.containers.v1.Containers')!
            .svc.method.find((m) => m.name === 'ListStream')!.serverStreaming = false),
      ).join('\n'),
    ).toMatch(/Containers: method ListStream/);
    expect(
      mutate(
        (idx) =>
          void idx.messages
            .get('.containerd.services.tasks.v1.CreateTaskRequest')!
            .msg.field.push(create(FieldDescriptorProtoSchema, { name: 'x', number: 2 })),
      ).join('\n'),
    ).toMatch(/CreateTaskRequest: extra field x=2/);
    expect(
      mutate((idx) => void (idx.messages.get('.containerd.v1.types.Process')!.msg.name = 'Proc')).join('\n'),
    ).toMatch(/message \.containerd\.v1\.types\.Process \(from .*task\.proto\) is missing/);
    // Unmutated: clean.
    expect(mutate(() => undefined)).toEqual([]);
  });
});
