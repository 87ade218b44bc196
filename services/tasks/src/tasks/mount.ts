import { execFile } from 'node:child_process';
import { invalidArgument } from '@berth/common/errors';

/** A mount as containerd describes it (type, source, options); the target is where the caller puts it. */
export interface Mount {
  readonly type: string;
  readonly source: string;
  readonly options: readonly string[];
}

function run(cmd: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, (err, _out, stderr) => (err ? reject(new Error(stderr.trim() || err.message)) : resolve())),
  );
}

/**
 * Mounts `mounts` in order on `target` (the bundle's rootfs), the way containerd's `mount.All` does.
 * Bind mounts are given as type `bind` (or `none`) with `bind`/`rbind` among the options.
 */
export async function mountAll(mounts: readonly Mount[], target: string): Promise<void> {
  const done: string[] = [];
  try {
    for (const m of mounts) {
      if (m.type === '' || m.source === '') throw invalidArgument('rootfs mount needs a type and a source');
      const isBind = m.type === 'bind' || m.options.includes('bind') || m.options.includes('rbind');
      const opts = [...m.options];
      if (m.type === 'bind' && !opts.includes('bind') && !opts.includes('rbind')) opts.push('rbind');
      const args = ['-t', isBind ? 'none' : m.type];
      if (opts.length > 0) args.push('-o', opts.join(','));
      args.push(m.source, target);
      await run('mount', args);
      done.push(target);
    }
  } catch (e) {
    for (const t of done.reverse()) await unmountAll(t).catch(() => undefined);
    throw e;
  }
}

/** Unmounts everything at `target` (recursively, until nothing is mounted there). */
export async function unmountAll(target: string): Promise<void> {
  for (let i = 0; i < 16; i++) {
    try {
      await run('umount', ['-R', target]);
    } catch (e) {
      if (/not mounted|no mount point|not found/i.test((e as Error).message)) return;
      throw e;
    }
  }
}
