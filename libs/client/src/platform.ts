import { invalidArgument } from '@berth/common/errors';

import type { Platform } from '@berth/common/oci';

export type { Platform };

const archAliases: Record<string, string> = {
  x86_64: 'amd64',
  'x86-64': 'amd64',
  x64: 'amd64',
  aarch64: 'arm64',
  i386: '386',
  ia32: '386',
  armhf: 'arm',
  armel: 'arm',
};

/** Canonical spelling, as containerd's platforms.Normalize: arm64 means v8, arm means v7 unless stated. */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  const architecture = archAliases[p.architecture.toLowerCase()] ?? p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  if (architecture === 'arm64' && (variant === undefined || variant === '8')) variant = 'v8';
  if (architecture === 'arm' && variant === undefined) variant = 'v7';
  if (architecture === 'arm' && variant !== undefined && /^\d$/.test(variant)) variant = `v${variant}`;
  if (architecture === 'amd64' && variant === 'v1') variant = undefined;
  return { os, architecture, variant };
}

/** The platform this process runs on. */
export function hostPlatform(): Platform {
  return normalizePlatform({
    os: process.platform === 'win32' ? 'windows' : process.platform,
    architecture: process.arch,
  });
}

/** Parses `os/arch[/variant]` (or just `arch`, meaning linux). */
export function parsePlatform(s: string): Platform {
  const parts = s.split('/');
  if (parts.length === 1 && parts[0]) return normalizePlatform({ os: 'linux', architecture: parts[0] });
  const [os, architecture, variant, extra] = parts;
  if (!os || !architecture || extra !== undefined)
    throw invalidArgument(`platform ${JSON.stringify(s)}: want os/arch[/variant]`);
  return normalizePlatform({ os, architecture, variant });
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

/**
 * How well `candidate` serves `want`: 0 is an exact match, larger is a compatible fallback (an older arm
 * variant), undefined means it cannot run. Lower wins, as containerd's platforms.Only orders them.
 */
export function platformRank(want: Platform, candidate: Platform): number | undefined {
  const w = normalizePlatform(want);
  const c = normalizePlatform(candidate);
  if (w.os !== c.os || w.architecture !== c.architecture) return undefined;
  if (w.variant === c.variant) return 0;
  if (w.architecture === 'arm' && w.variant && c.variant) {
    const wv = Number(w.variant.slice(1));
    const cv = Number(c.variant.slice(1));
    return cv < wv && cv >= 5 ? wv - cv : undefined;
  }
  return undefined;
}
