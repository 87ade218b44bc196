import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { type CertAndKey, createCa, issueCert } from '@berth/common/tls/certs';

export interface CertsOptions {
  /** Where the PEM files go (created 0700). */
  readonly dir: string;
  /** One certificate per name (a service or a node); each is used as both server and client certificate. */
  readonly names: readonly string[];
  /** subjectAltNames of every certificate; default localhost, 127.0.0.1, ::1 and this host's name. */
  readonly hosts?: readonly string[];
  readonly days?: number;
}

/**
 * `berthd certs`: a cluster CA (`ca.pem`, `ca-key.pem`; reused when already in `dir`) and `<name>.pem` +
 * `<name>-key.pem` per name. Keys are written 0600. Returns the files written.
 */
export async function makeCerts(opts: CertsOptions): Promise<string[]> {
  await mkdir(opts.dir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const caFile = join(opts.dir, 'ca.pem');
  const caKeyFile = join(opts.dir, 'ca-key.pem');
  let ca: CertAndKey;
  if (existsSync(caFile) && existsSync(caKeyFile)) {
    ca = { cert: await readFile(caFile, 'utf8'), key: await readFile(caKeyFile, 'utf8') };
  } else {
    ca = createCa();
    await writeFile(caKeyFile, ca.key, { mode: 0o600 });
    await writeFile(caFile, ca.cert);
    written.push(caFile, caKeyFile);
  }
  const hosts = opts.hosts && opts.hosts.length > 0 ? opts.hosts : ['localhost', '127.0.0.1', '::1', hostname()];
  for (const name of opts.names) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name))
      throw new Error(`certs: ${JSON.stringify(name)} is not a valid name`);
    const pair = issueCert(ca, {
      name,
      hosts: [...new Set([name, ...hosts])],
      ...(opts.days ? { days: opts.days } : {}),
    });
    const cert = join(opts.dir, `${name}.pem`);
    const key = join(opts.dir, `${name}-key.pem`);
    await writeFile(key, pair.key, { mode: 0o600 });
    await chmod(key, 0o600);
    await writeFile(cert, pair.cert);
    written.push(cert, key);
  }
  return written;
}
