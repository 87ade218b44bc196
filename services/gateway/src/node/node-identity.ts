import { randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { hasErrno } from '@berth/common/errors';

/** The node's UUID (Introspection.Server), created once and kept in `path` so it survives restarts. */
export async function loadNodeUuid(path: string): Promise<string> {
  try {
    const text = (await readFile(path, 'utf8')).trim();
    if (text) return text;
  } catch (e) {
    if (!hasErrno(e, 'ENOENT')) throw e;
  }
  const uuid = randomUUID();
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${uuid}\n`, { mode: 0o644 });
  return uuid;
}
