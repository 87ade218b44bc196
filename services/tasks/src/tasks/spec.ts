import { ErrorCode, invalidArgument, ServiceError } from '@berth/common/errors';

/** Runtimes this agent runs (all with runc); containerd's names for them. */
export const runcRuntimes: ReadonlySet<string> = new Set([
  'io.containerd.runc.v2',
  'io.containerd.runc.v1',
  'io.containerd.runtime.v1.linux',
]);

export function runcRoutes(runtime: string): boolean {
  return runcRuntimes.has(runtime);
}

/**
 * The container's OCI runtime spec, checked for what the agent relies on (a process, root.path), with a
 * cgroups path of its own when the client gave none.
 */
export function parseSpec(raw: Buffer | undefined, ns: string, id: string): Record<string, unknown> {
  if (!raw || raw.length === 0) throw invalidArgument(`container ${JSON.stringify(id)} has no runtime spec`);
  let spec: unknown;
  try {
    spec = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw invalidArgument(`runtime spec of container ${JSON.stringify(id)} is not JSON`, e);
  }
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
    throw invalidArgument(`runtime spec of container ${JSON.stringify(id)} is not an object`);
  }
  const s = spec as Record<string, unknown>;
  if (typeof s.process !== 'object' || s.process === null) throw invalidArgument('runtime spec has no process');
  const root = s.root as { path?: unknown } | undefined;
  if (typeof root !== 'object' || root === null || typeof root.path !== 'string' || root.path === '') {
    throw invalidArgument('runtime spec has no root.path');
  }
  if (s.linux === undefined) s.linux = {};
  const linux = s.linux as Record<string, unknown>;
  if (typeof linux !== 'object' || linux === null) throw invalidArgument('runtime spec linux section is not an object');
  if (typeof linux.cgroupsPath !== 'string' || linux.cgroupsPath === '') linux.cgroupsPath = `/berth/${ns}/${id}`;
  return s;
}

/** An Exec request's OCI Process (JSON bytes), which must have args. */
export function parseExecProcess(raw: Buffer, terminal: boolean): Record<string, unknown> {
  let process: Record<string, unknown>;
  try {
    const parsed = JSON.parse(raw.toString('utf8')) as unknown;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    process = parsed as Record<string, unknown>;
  } catch (e) {
    throw invalidArgument('exec process spec is not a JSON OCI process', e);
  }
  if (!Array.isArray(process.args) || process.args.length === 0) throw invalidArgument('exec process spec has no args');
  if (terminal) process.terminal = true;
  return process;
}

/**
 * runc refused the container (bad spec, missing executable, …): that is the request's fault, so it is
 * invalid_argument, with runc's own reason in containerd's words.
 */
export function runcCreateError(e: unknown): ServiceError {
  if (e instanceof ServiceError && e.code !== ErrorCode.Unknown) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new ServiceError(ErrorCode.InvalidArgument, `failed to create shim task: OCI runtime create failed: ${msg}`, {
    cause: e,
  });
}

export function runcExecError(e: unknown): ServiceError {
  if (e instanceof ServiceError && e.code !== ErrorCode.Unknown) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new ServiceError(ErrorCode.InvalidArgument, `OCI runtime exec failed: ${msg}`, { cause: e });
}
