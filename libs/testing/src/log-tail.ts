/**
 * Reads the end of a server log so start failures can say what the server said.
 */
import { readFile } from 'node:fs/promises';

/** Last `lines` lines of `file`, or a note saying why it could not be read. Never throws. */
export async function logTail(file: string, lines = 30): Promise<string> {
  try {
    const text = await readFile(file, 'utf8');
    const all = text.trimEnd().split('\n');
    const tail = all.slice(-lines).join('\n');
    return `--- last ${Math.min(lines, all.length)} lines of ${file} ---\n${tail}\n--- end of log ---`;
  } catch (err) {
    return `(could not read log ${file}: ${err instanceof Error ? err.message : String(err)})`;
  }
}
