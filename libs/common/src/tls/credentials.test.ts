import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BoundServer, createServer, listen } from '../grpc-server.js';
import { createLogger } from '../log.js';
import { type CertAndKey, createCa, issueCert } from './certs.js';
import { type ClusterTls, clusterTls, useClusterTls } from './credentials.js';

const raw = (b: Buffer): Buffer => b;
const echo = {
  path: '/test.Tls/Echo',
  requestStream: false,
  responseStream: false,
  requestSerialize: raw,
  requestDeserialize: raw,
  responseSerialize: raw,
  responseDeserialize: raw,
} satisfies grpc.MethodDefinition<Buffer, Buffer>;

function writePair(dir: string, name: string, pair: CertAndKey): { cert: string; key: string } {
  writeFileSync(join(dir, `${name}.pem`), pair.cert);
  writeFileSync(join(dir, `${name}-key.pem`), pair.key, { mode: 0o600 });
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) };
}

function call(address: string, creds: grpc.ChannelCredentials): Promise<string> {
  const client = new grpc.Client(address, creds);
  return new Promise<string>((resolve, reject) => {
    client.makeUnaryRequest(echo.path, raw, raw, Buffer.from('ping'), { deadline: Date.now() + 5_000 }, (err, res) => {
      client.close();
      if (err) reject(err);
      else resolve(res?.toString() ?? '');
    });
  });
}

const refusal = (p: Promise<unknown>): Promise<grpc.ServiceError | undefined> =>
  p.then(
    () => undefined,
    (e: grpc.ServiceError) => e,
  );

describe('mutual TLS between services', () => {
  const dir = mkdtempSync(join(tmpdir(), 'berth-tls-'));
  const ca = createCa();
  const otherCa = createCa({ name: 'Someone else' });
  const hosts = ['localhost', '127.0.0.1'];
  const server = writePair(dir, 'server', issueCert(ca, { name: 'metadata', hosts }));
  const client = writePair(dir, 'client', issueCert(ca, { name: 'node-1', hosts }));
  const rogue = issueCert(otherCa, { name: 'node-1', hosts });
  writeFileSync(join(dir, 'ca.pem'), ca.cert);
  const caFile = join(dir, 'ca.pem');
  let logs = '';
  const log = createLogger({ write: (l) => (logs += l) });
  let serverTls: ClusterTls;
  let bound: BoundServer;

  beforeAll(async () => {
    serverTls = clusterTls({ ca: caFile, ...server }, { log, refreshMs: 100 });
    const s = createServer();
    s.addService(
      { echo },
      {
        echo: (c: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
          cb(null, Buffer.from(`pong ${c.request.toString()}`)),
      },
    );
    bound = await listen(s, '127.0.0.1:0', serverTls);
  });
  afterAll(async () => {
    await bound?.close(100);
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers a client holding a certificate from the cluster CA', async () => {
    const tls = clusterTls({ ca: caFile, ...client }, { log });
    expect(await call(bound.address, tls.channel)).toBe('pong ping');
  });

  it('refuses a plaintext client, one without a certificate and one with a certificate from another CA, and logs it', async () => {
    const caPem = Buffer.from(ca.cert);
    const plain = await refusal(call(bound.address, grpc.credentials.createInsecure()));
    const noCert = await refusal(call(bound.address, grpc.credentials.createSsl(caPem)));
    const otherCert = await refusal(
      call(bound.address, grpc.credentials.createSsl(caPem, Buffer.from(rogue.key), Buffer.from(rogue.cert))),
    );
    for (const e of [plain, noCert, otherCert]) expect(e?.code).toBe(grpc.status.UNAVAILABLE);
    await new Promise((r) => setTimeout(r, 300));
    const refused = logs.split('\n').filter((l) => l.includes('refused connection'));
    expect(refused.length).toBeGreaterThanOrEqual(2);
    expect(refused.join('\n')).toMatch(/"remote":"127\.0\.0\.1:\d+"/);
  });

  it('picks up a rotated certificate file without a restart', async () => {
    const seen: string[] = [];
    const probe = (): Promise<string> =>
      call(
        bound.address,
        grpc.credentials.createSsl(Buffer.from(ca.cert), null, null, {
          checkServerIdentity: (_host, cert) => {
            seen.push(cert.serialNumber);
            return undefined;
          },
        }),
      ).catch(() => 'refused: no client certificate, as expected');
    // The handshake presents the server certificate before the missing client certificate is refused.
    await probe();
    const before = seen.at(-1);
    const rotated = issueCert(ca, { name: 'metadata', hosts });
    writePair(dir, 'server', rotated);
    const want = new (await import('node:crypto')).X509Certificate(rotated.cert).serialNumber;
    for (let i = 0; i < 50 && seen.at(-1) !== want; i++) {
      await new Promise((r) => setTimeout(r, 100));
      await probe();
    }
    expect(before).toBeDefined();
    expect(seen.at(-1)).toBe(want);
    expect(want).not.toBe(before);
  });

  it('keeps a unix socket plaintext with mode 0660 even when the process uses cluster TLS', async () => {
    useClusterTls(serverTls);
    try {
      const s = createServer();
      s.addService(
        { echo },
        {
          echo: (_c: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
            cb(null, Buffer.from('unix')),
        },
      );
      const sock = join(dir, 'node.sock');
      const b = await listen(s, sock);
      try {
        expect(statSync(sock).mode & 0o777).toBe(0o660);
        expect(await call(b.address, grpc.credentials.createInsecure())).toBe('unix');
      } finally {
        await b.close(100);
      }
    } finally {
      useClusterTls(undefined);
    }
  });
});

describe('cluster TLS configuration', () => {
  it('refuses at startup a file it cannot read, naming the key', () => {
    expect(() =>
      clusterTls(
        { ca: '/nonexistent/ca.pem', cert: '/nonexistent/c.pem', key: '/nonexistent/k.pem' },
        { log: createLogger({ level: 'silent' }) },
      ),
    ).toThrow(/tls\.ca: cannot read \/nonexistent\/ca\.pem/);
  });
});
