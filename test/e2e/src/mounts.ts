import { execFileSync } from 'node:child_process';

/** Runs the `mount …` line ctr prints (`mount -t <type> <source> <target> -o <options>`) on this host. */
export function mountAsPrinted(line: string): void {
  const m = /^mount -t (\S+) (\S+) (\S+) -o (\S+)$/.exec(line.trim());
  if (!m) throw new Error(`unexpected mount line: ${line}`);
  const [, type, source, target, options] = m as unknown as [string, string, string, string, string];
  // mount(8) takes bind mounts as an option, not a filesystem type.
  if (type === 'bind')
    execFileSync('mount', [
      '--bind',
      '-o',
      options.replace(/(^|,)rbind(,|$)/, '$1$2').replace(/^,|,$/g, ''),
      source,
      target,
    ]);
  else execFileSync('mount', ['-t', type, source, target, '-o', options]);
}

/**
 * The `mount` command for the first mount `ctr snapshots view --mounts` (or `prepare --mounts`) printed as JSON.
 * Taking the mounts from the creating call matters for an unreferenced view: gc may collect it at any moment after
 * it is made (containerd's and Berth's alike), so a later `ctr snapshots mounts` can find it gone.
 */
export function mountCommand(mountsJson: string, target: string): string {
  const mounts = JSON.parse(mountsJson) as Array<Record<string, string | string[] | undefined>>;
  const m = mounts[0] ?? {};
  const options = (m['Options'] ?? m['options'] ?? []) as string[];
  return `mount -t ${String(m['Type'] ?? m['type'])} ${String(m['Source'] ?? m['source'])} ${target} -o ${options.join(',')}`;
}
