import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadConfig } from '@berth/berthd/config';
import { parseAllDocuments } from 'yaml';
import { repoRoot } from './engine.js';

const run = promisify(execFile);

/** Every YAML document of a file, as plain objects. Throws on a YAML error. */
export async function yamlDocuments(path: string): Promise<Array<Record<string, unknown>>> {
  const docs = parseAllDocuments(await readFile(path, 'utf8'), { merge: true });
  return docs.map((d) => {
    if (d.errors.length > 0) throw new Error(`${path}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as Record<string, unknown>;
  });
}

export async function filesIn(dir: string, suffix: string): Promise<string[]> {
  return (await readdir(join(repoRoot, dir)))
    .filter((f) => f.endsWith(suffix))
    .sort()
    .map((f) => join(repoRoot, dir, f));
}

/** The BERTH_* environment variables berthd's configuration reads (every config key's variable). */
export function configEnvNames(): Set<string> {
  const read = new Set<string>();
  const env = new Proxy({} as Record<string, string | undefined>, {
    get(_, name) {
      if (typeof name === 'string') read.add(name);
      return undefined;
    },
  });
  loadConfig({ env });
  return read;
}

/** The variables the image's berthd wrapper (deploy/docker/berthd) and main.ts read beyond the config keys. */
export async function wrapperEnvNames(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const file of ['deploy/docker/berthd', 'apps/berthd/src/main.ts']) {
    const text = await readFile(join(repoRoot, file), 'utf8');
    for (const m of text.matchAll(/\b(BERTH_[A-Z_]+)\b/g)) if (m[1]) names.add(m[1]);
  }
  return names;
}

/** berthd's roles from its own usage text: `serve <…>` targets, `serve node`, and the `migrate` verb. */
export async function berthdRoles(): Promise<Set<string>> {
  const { stdout } = await berthd(['--help']);
  const roles = new Set<string>();
  for (const m of stdout.matchAll(/berthd serve <([a-z|]+)>/g)) for (const r of m[1]?.split('|') ?? []) roles.add(r);
  for (const m of stdout.matchAll(/berthd serve ([a-z]+) /g)) if (m[1]) roles.add(m[1]);
  if (/berthd migrate/.test(stdout)) roles.add('migrate');
  return roles;
}

/** Resolves when berthd's argument parser accepts these arguments (parsing only: `--help` stops it there). */
export async function berthdAccepts(args: readonly string[]): Promise<void> {
  await berthd([...args, '--help']);
}

/** Runs berthd once per distinct argument list (each start loads every service: seconds on a busy machine). */
const runs = new Map<string, Promise<{ stdout: string; stderr: string }>>();
function berthd(args: readonly string[]) {
  const key = JSON.stringify(args);
  let r = runs.get(key);
  if (!r) {
    r = run('node', [join(repoRoot, 'apps/berthd/dist/main.js'), ...args], { timeout: 60_000 });
    runs.set(key, r);
  }
  return r;
}

/** A config file's keys as dotted paths (`content.s3.endpoint`), leaves only. */
export function configKeys(value: unknown, prefix = ''): string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [prefix];
  return Object.entries(value).flatMap(([k, v]) => configKeys(v, prefix ? `${prefix}.${k}` : k));
}

/** `host:port` → port, or undefined. */
export function portOf(address: string | undefined): number | undefined {
  const m = /:(\d+)$/.exec(address ?? '');
  return m ? Number(m[1]) : undefined;
}
