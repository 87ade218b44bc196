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
