import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@berth/testing/ports';
import { type TestPostgres, usePostgres } from '@berth/testing/postgres';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr } from './src/ctr.js';

const berthdMain = join(resolve(fileURLToPath(import.meta.url), '../../..'), 'apps/berthd/dist/main.js');

/** Runs berthd to its exit; resolves its exit code and stderr. */
function berthdExit(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string }> {
  return new Promise((r) => {
    execFile(
      process.execPath,
      [berthdMain, ...args],
      { env: { ...process.env, ...env }, timeout: 30_000 },
      (err, _o, stderr) => r({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
}

describe('secrets: from files or the environment, never from flags, never in logs or /metrics', () => {
  let dir: string;
  let pg: TestPostgres;
  let d: BerthdProcess;
  let password: string;
  let httpUrl: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-e2e-secrets-'));
    pg = await usePostgres();
    const url = new URL(pg.url);
    // A trust-auth server ignores the password; a password-auth one (BERTH_TEST_POSTGRES_URL) has its own.
    if (!url.password) url.password = 'e2e-hunter2-pw';
    password = decodeURIComponent(url.password);
    const secretFile = join(dir, 'postgres-url');
    await writeFile(secretFile, `${url.toString()}\n`, { mode: 0o600 });
    httpUrl = `127.0.0.1:${await freePort()}`;
    d = await startBerthd({
      dir: join(dir, 'd'),
      args: ['--http', httpUrl, '--log-level', 'debug'],
      env: { BERTH_POSTGRES_FILE: secretFile },
    });
  });
  afterAll(async () => {
    await d?.stop();
    await pg?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves on a Postgres URL read from BERTH_POSTGRES_FILE, and neither its logs nor /metrics show the password', async () => {
    expect((await ctr(d.socket, ['namespaces', 'create', 'secret1'])).code).toBe(0);
    expect((await ctr(d.socket, ['namespaces', 'ls', '-q'])).stdout).toContain('secret1');
    const metrics = await (await fetch(`http://${httpUrl}/metrics`)).text();
    expect(metrics).toContain('process_cpu');
    expect(metrics).not.toContain(password);
    expect(d.logs()).not.toContain(password);
  });

  it('refuses a password in --postgres without echoing it', async () => {
    const r = await berthdExit([
      '--root',
      join(dir, 'r1'),
      '--postgres',
      'postgres://berth:flag-pw-1234@127.0.0.1:1/db',
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--postgres carries a secret');
    expect(r.stderr).not.toContain('flag-pw-1234');
  });

  it('masks the password when a fatal error quotes the URL', async () => {
    const r = await berthdExit(
      ['--root', join(dir, 'r2'), '--state', join(dir, 's2'), '--address', join(dir, 's2.sock')],
      {
        BERTH_POSTGRES: 'postgresx://berth:env-pw-5678@127.0.0.1:1/db',
      },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('postgresx://berth:***@127.0.0.1:1/db');
    expect(r.stderr).not.toContain('env-pw-5678');
  });
});
