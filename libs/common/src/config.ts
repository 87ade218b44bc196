import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { invalidArgument } from './errors.js';

/**
 * Layered configuration: command-line flags over environment variables over a JSON config file over
 * defaults. Keys are dotted paths (`metadata.postgres`); the environment name of a key is `BERTH_` plus the
 * key upper-cased with dots and dashes as underscores (`BERTH_METADATA_POSTGRES`).
 */
export interface ConfigSources {
  readonly flags?: Readonly<Record<string, string | boolean | undefined>>;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly file?: unknown;
}

export function envName(key: string): string {
  return `BERTH_${key.toUpperCase().replace(/[.-]/g, '_')}`;
}

/** Reads typed values and collects every problem, so a bad config is reported whole, once. */
export class ConfigReader {
  private readonly problems: string[] = [];
  private readonly found: string[] = [];

  constructor(private readonly sources: ConfigSources) {}

  private raw(key: string): string | undefined {
    const flag = this.sources.flags?.[key];
    if (flag !== undefined) return String(flag);
    const env = this.sources.env?.[envName(key)];
    if (env !== undefined && env !== '') return env;
    let node: unknown = this.sources.file;
    for (const part of key.split('.')) {
      if (typeof node !== 'object' || node === null) return undefined;
      node = (node as Record<string, unknown>)[part];
    }
    if (node === undefined || node === null) return undefined;
    return typeof node === 'object' ? JSON.stringify(node) : String(node);
  }

  str(key: string, fallback: string): string {
    return this.raw(key) ?? fallback;
  }

  optional(key: string): string | undefined {
    return this.raw(key);
  }

  int(key: string, fallback: number): number {
    const v = this.raw(key);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isInteger(n)) {
      this.problems.push(`${key}: ${JSON.stringify(v)} is not an integer`);
      return fallback;
    }
    return n;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw(key);
    if (v === undefined) return fallback;
    if (['1', 'true', 'yes', 'on'].includes(v)) return true;
    if (['0', 'false', 'no', 'off'].includes(v)) return false;
    this.problems.push(`${key}: ${JSON.stringify(v)} is not a boolean`);
    return fallback;
  }

  oneOf<T extends string>(key: string, choices: readonly T[], fallback: T): T {
    const v = this.raw(key);
    if (v === undefined) return fallback;
    if ((choices as readonly string[]).includes(v)) return v as T;
    this.problems.push(`${key}: ${JSON.stringify(v)} is not one of ${choices.join(', ')}`);
    return fallback;
  }

  /**
   * A secret, or a URL that may carry one: read from the file named by `<key>-file` (flag, `BERTH_<KEY>_FILE` or
   * the config file), else `<key>` from the environment or the config file. A command-line flag is refused when
   * `secretIn(value)` finds a secret in it, because every local user can read command lines (`ps`, /proc).
   * What `secretIn` finds is remembered for `secrets()`, so logs can mask it.
   */
  secret(key: string, secretIn: (value: string) => string[] = (v) => [v]): string | undefined {
    const fileKey = `${key}-file`;
    const file = this.raw(fileKey);
    let value: string | undefined;
    if (file !== undefined) {
      try {
        value = readFileSync(file, 'utf8').trim();
      } catch (e) {
        this.problems.push(`${fileKey}: cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
        return undefined;
      }
    } else {
      const flag = this.sources.flags?.[key];
      if (flag !== undefined && secretIn(String(flag)).length > 0) {
        this.problems.push(
          `--${key} carries a secret, and command lines are visible to every user: ` +
            `set ${envName(key)}, or put it in a file named by --${fileKey} / ${envName(fileKey)}`,
        );
        return undefined;
      }
      value = this.raw(key);
    }
    if (value !== undefined) this.found.push(...secretIn(value));
    return value;
  }

  /** The secret values `secret` has read so far. */
  secrets(): string[] {
    return [...this.found];
  }

  /** Records a problem found by the caller's own validation. */
  problem(text: string): void {
    this.problems.push(text);
  }

  /** Throws invalid_argument listing every problem found so far. */
  throwIfInvalid(): void {
    if (this.problems.length > 0) throw invalidArgument(`invalid configuration: ${this.problems.join('; ')}`);
  }
}

/** Loads a JSON config file; a missing path means no file. */
export async function readConfigFile(path: string | undefined): Promise<unknown> {
  if (!path) return undefined;
  const text = await readFile(path, 'utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw invalidArgument(`config file ${path} is not valid JSON`, e);
  }
}

/** The secrets in a URL: its password (and a bare user name on nats://, which is a token there). */
export function urlSecrets(value: string): string[] {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return [];
  }
  const out: string[] = [];
  if (u.password) out.push(decodeURIComponent(u.password), u.password);
  else if (u.username && u.protocol.startsWith('nats')) out.push(decodeURIComponent(u.username), u.username);
  return out;
}
