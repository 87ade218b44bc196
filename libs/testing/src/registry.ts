/**
 * A private OCI registry for pull tests: Debian's `docker-registry` (distribution 2.8) on a free loopback
 * port, storing blobs in a temp dir. Anonymous by default; with `auth: 'token'` it demands bearer tokens
 * issued by a small token server the kit runs beside it (the Docker token protocol: 401 with
 * `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, then GET realm?service&scope → {token}).
 *
 * Binary: $BERTH_TEST_REGISTRY, else /usr/bin/docker-registry. Log: `<dir>/registry.log`.
 */
import { execFile, spawn } from 'node:child_process';
import { createSign, randomUUID, X509Certificate } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { killAtExit } from './cleanup.js';
import { logTail } from './log-tail.js';
import { freePort } from './ports.js';
import { tempDir } from './tmp.js';

export interface RegistryOptions {
  /** `none` (default): anonymous pulls and pushes. `token`: bearer tokens from a token server started beside it. */
  readonly auth?: 'none' | 'token';
  /** How long to wait for the registry to answer /v2/. Default 20 000 ms. */
  readonly readyTimeoutMs?: number;
  /** Write the HTTP access log (one line per request) to `logFile`, for `blobFetches`. Default off. */
  readonly accessLog?: boolean;
  /**
   * Keep blob descriptors in memory (`storage.cache.blobdescriptor: inmemory`), as the shared harness's
   * `start_registry` (../shared/bench/lib.sh) does. Default off: every request reads the blob's link files.
   */
  readonly blobDescriptorCache?: boolean;
}

export interface TokenServerStats {
  /** Token requests served, with the scope each asked for. */
  readonly requests: readonly {
    readonly service: string;
    readonly scope: string;
    readonly authorization: string | undefined;
  }[];
}

export interface Registry {
  /** `127.0.0.1:<port>`: what goes in front of an image name (`<host>/busybox:latest`). */
  readonly host: string;
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** Blob and manifest storage directory. */
  readonly rootDir: string;
  readonly logFile: string;
  /**
   * How many times each blob was fetched (`GET /v2/<repository>/blobs/<digest>`), from the access log; needs
   * `accessLog: true`. Answers to HEAD and manifests are not counted.
   */
  blobFetches(): Promise<ReadonlyMap<string, number>>;
  /** Headers to send on pushes (a bearer token with push rights when auth is `token`, else none). */
  pushHeaders(repository: string): Promise<Record<string, string>>;
  /** Token server statistics when auth is `token`. */
  readonly tokens: TokenServerStats | undefined;
  /** Stops the registry (SIGTERM, SIGKILL after 5 s) and deletes its storage. Idempotent. */
  stop(): Promise<void>;
}

const exec = promisify(execFile);

/** Starts a registry on a free port and waits until it answers. Throws with the log tail if it cannot start. */
export async function startRegistry(opts: RegistryOptions = {}): Promise<Registry> {
  const dir = tempDir('berth-registry-');
  const binary = process.env['BERTH_TEST_REGISTRY'] || '/usr/bin/docker-registry';
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  const url = `http://${host}`;
  const logFile = join(dir.path, 'registry.log');
  const token = opts.auth === 'token' ? await startTokenServer(dir.path) : undefined;

  const auth = token
    ? [
        'auth:',
        '  token:',
        `    realm: ${token.realm}`,
        `    service: ${token.service}`,
        `    issuer: ${token.issuer}`,
        `    rootcertbundle: ${token.certFile}`,
      ]
    : [];
  const config = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    `    disabled: ${opts.accessLog ? 'false' : 'true'}`,
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir.path, 'data')}`,
    '  delete:',
    '    enabled: true',
    ...(opts.blobDescriptorCache ? ['  cache:', '    blobdescriptor: inmemory'] : []),
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: ${host}`,
    ...auth,
    '',
  ].join('\n');
  const configFile = join(dir.path, 'config.yml');
  await writeFile(configFile, config);

  const log = openSync(logFile, 'a');
  const child = spawn(binary, ['serve', configFile], { stdio: ['ignore', log, log], detached: false });
  closeSync(log);
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const unregister = child.pid === undefined ? () => undefined : killAtExit(child.pid);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(timer);
    }
    unregister();
    await token?.close();
    await dir.remove();
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 20_000);
  for (;;) {
    const failed = await Promise.race([spawnError, exited.then(() => new Error('exited')), ready(url)]);
    if (failed === true) break;
    if (failed instanceof Error || Date.now() > deadline) {
      const why = failed instanceof Error ? failed.message : 'no answer on /v2/';
      const tail = await logTail(logFile);
      await stop();
      throw new Error(`docker-registry (${binary}) did not start on ${host}: ${why}\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  return {
    host,
    url,
    rootDir: join(dir.path, 'data'),
    logFile,
    tokens: token?.stats,
    async blobFetches() {
      if (!opts.accessLog) throw new Error('blobFetches needs startRegistry({ accessLog: true })');
      const counts = new Map<string, number>();
      for (const m of (await readFile(logFile, 'utf8')).matchAll(
        /"GET \/v2\/\S+\/blobs\/(sha256:[0-9a-f]{64}) HTTP/g,
      )) {
        const digest = m[1] ?? '';
        counts.set(digest, (counts.get(digest) ?? 0) + 1);
      }
      return counts;
    },
    async pushHeaders(repository: string): Promise<Record<string, string>> {
      if (!token) return {};
      return { authorization: `Bearer ${token.issue(repository, ['pull', 'push'])}` };
    },
    stop,
  };
}

/** true when /v2/ answers as a registry does (200 anonymous, 401 with token auth); false while not listening. */
async function ready(url: string): Promise<true | false> {
  try {
    const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1_000) });
    await res.arrayBuffer();
    return res.status === 200 || res.status === 401;
  } catch {
    return false;
  }
}

interface TokenServer {
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  readonly certFile: string;
  readonly stats: TokenServerStats;
  /** A signed token granting `actions` on `repository`. */
  issue(repository: string, actions: readonly string[]): string;
  close(): Promise<void>;
}

/**
 * The Docker registry token protocol's server side, just enough for distribution 2.8: an RS256 JWT
 * whose `x5c` header carries a self-signed certificate that the registry trusts (rootcertbundle).
 * Grants what the scope asks for to anyone: it exists to exercise the client's challenge → token → retry flow.
 */
async function startTokenServer(dir: string): Promise<TokenServer> {
  const keyFile = join(dir, 'token.key');
  const certFile = join(dir, 'token.crt');
  await exec('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-subj',
    '/CN=berth-test-token',
    '-days',
    '2',
  ]);
  const key = await readFile(keyFile, 'utf8');
  const certDer = new X509Certificate(await readFile(certFile)).raw.toString('base64');
  const service = 'berth-test-registry';
  const issuer = 'berth-test-issuer';
  const requests: { service: string; scope: string; authorization: string | undefined }[] = [];

  const b64url = (v: string | Buffer): string => Buffer.from(v).toString('base64url');
  const issue = (repository: string, actions: readonly string[]): string => {
    const now = Math.floor(Date.now() / 1000);
    const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', x5c: [certDer] }));
    const claims = b64url(
      JSON.stringify({
        iss: issuer,
        sub: 'berth-test',
        aud: service,
        exp: now + 300,
        nbf: now - 10,
        iat: now,
        jti: randomUUID(),
        access: [{ type: 'repository', name: repository, actions }],
      }),
    );
    const signer = createSign('RSA-SHA256');
    signer.update(`${header}.${claims}`);
    return `${header}.${claims}.${b64url(signer.sign(key))}`;
  };

  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const u = new URL(req.url ?? '/', 'http://token');
    const scope = u.searchParams.get('scope') ?? '';
    requests.push({ service: u.searchParams.get('service') ?? '', scope, authorization: req.headers.authorization });
    // scope = repository:<name>:<actions,…>; the name may itself contain ':' only before a port, never here.
    const m = /^repository:([^:]+):(.+)$/.exec(scope);
    const token = m?.[1] && m[2] ? issue(m[1], m[2].split(',')) : issue('', []);
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ token, access_token: token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  const port = await freePort();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return {
    realm: `http://127.0.0.1:${port}/token`,
    service,
    issuer,
    certFile,
    stats: { requests },
    issue,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
