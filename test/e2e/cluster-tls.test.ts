import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { NamespacesClient } from '@berth/proto/containerd/services/namespaces/v1/namespace';
import { freePort } from '@berth/testing/ports';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr } from './src/ctr.js';

const berthdMain = join(resolve(fileURLToPath(import.meta.url), '../../..'), 'apps/berthd/dist/main.js');
const run = promisify(execFile);

/** One List call with `creds`; resolves the status code (0 when it answered). */
function listNamespaces(address: string, creds: grpc.ChannelCredentials): Promise<number> {
  const client = new NamespacesClient(address, creds);
  return new Promise((r) =>
    client.list({ filter: '' }, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err) => {
      client.close();
      r(err ? err.code : 0);
    }),
  );
}

describe('cluster mode over mutual TLS (berthd certs, serve metadata on TCP, gateway in front)', () => {
  let dir: string;
  let certs: string;
  let metadata: BerthdProcess;
  let gateway: BerthdProcess;
  let metadataAddress: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-e2e-tls-'));
    certs = join(dir, 'certs');
    const made = await run(process.execPath, [
      berthdMain,
      'certs',
      '--dir',
      certs,
      '--name',
      'metadata',
      '--name',
      'node-1',
      '--host',
      '127.0.0.1',
    ]);
    expect(made.stdout.split('\n')).toContain(join(certs, 'node-1-key.pem'));
    metadataAddress = `127.0.0.1:${await freePort()}`;
    const tlsFor = (name: string) => ({
      ca: join(certs, 'ca.pem'),
      cert: join(certs, `${name}.pem`),
      key: join(certs, `${name}-key.pem`),
      'refresh-seconds': 1,
    });
    metadata = await startBerthd({
      role: ['serve', 'metadata'],
      config: { metadata: { address: metadataAddress }, tls: tlsFor('metadata') },
      socket: metadataAddress,
    });
    gateway = await startBerthd({
      role: ['serve', 'gateway'],
      config: { metadata: { address: metadataAddress }, tls: tlsFor('node-1') },
    });
  });
  afterAll(async () => {
    await gateway?.stop();
    await metadata?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('ctr through the node socket reaches metadata over mTLS; the node socket stays 0660', async () => {
    expect((await ctr(gateway.socket, ['namespaces', 'create', 'tls1'])).code).toBe(0);
    const ls = await ctr(gateway.socket, ['namespaces', 'ls', '-q']);
    expect(ls.stdout.split('\n')).toContain('tls1');
    expect((await stat(gateway.socket)).mode & 0o777).toBe(0o660);
  });

  it('refuses, and logs, a client without a certificate or with one from another CA', async () => {
    const ca = await readFile(join(certs, 'ca.pem'));
    expect(await listNamespaces(metadataAddress, grpc.credentials.createInsecure())).toBe(grpc.status.UNAVAILABLE);
    expect(await listNamespaces(metadataAddress, grpc.credentials.createSsl(ca))).toBe(grpc.status.UNAVAILABLE);

    const other = join(dir, 'other');
    await run(process.execPath, [berthdMain, 'certs', '--dir', other, '--name', 'intruder', '--host', '127.0.0.1']);
    const intruder = grpc.credentials.createSsl(
      ca,
      await readFile(join(other, 'intruder-key.pem')),
      await readFile(join(other, 'intruder.pem')),
    );
    expect(await listNamespaces(metadataAddress, intruder)).toBe(grpc.status.UNAVAILABLE);

    // A certificate from the cluster CA is let in.
    const member = grpc.credentials.createSsl(
      ca,
      await readFile(join(certs, 'node-1-key.pem')),
      await readFile(join(certs, 'node-1.pem')),
    );
    expect(await listNamespaces(metadataAddress, member)).toBe(grpc.status.OK);
    expect(metadata.logs()).toMatch(/"msg":"refused connection: TLS handshake failed".*"remote":"127\.0\.0\.1:\d+"/);
  });

  it('berthd certs adds certificates under the existing CA, keys 0600', async () => {
    const before = await readFile(join(certs, 'ca.pem'), 'utf8');
    await run(process.execPath, [berthdMain, 'certs', '--dir', certs, '--name', 'node-2']);
    expect(await readFile(join(certs, 'ca.pem'), 'utf8')).toBe(before);
    expect((await stat(join(certs, 'node-2-key.pem'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(certs, 'ca-key.pem'))).mode & 0o777).toBe(0o600);
    // Swap node-1's identity for node-2's on disk: the gateway picks it up and keeps working.
    await writeFile(join(certs, 'node-1.pem'), await readFile(join(certs, 'node-2.pem')));
    await writeFile(join(certs, 'node-1-key.pem'), await readFile(join(certs, 'node-2-key.pem')));
    await new Promise((r) => setTimeout(r, 1500));
    expect((await ctr(gateway.socket, ['namespaces', 'create', 'tls2'])).code).toBe(0);
  });
});
