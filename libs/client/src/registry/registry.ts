/**
 * One repository of one registry over the OCI distribution protocol (HTTP API v2), with Node's fetch:
 * resolve a tag or digest to a descriptor, fetch manifests and configs (verified), stream blobs from an
 * offset (HTTP Range, for resumed ingests). Answers 401 challenges with bearer tokens or Basic credentials.
 *
 * Hand-written because the npm clients weighed were thin or unsafe: oci-registry-client is 0.2.0 on node-fetch 2
 * (and minimist, a CLI's parser); docker-registry-client pins restify-clients, bunyan and tough-cookie 2.0.x
 * (prototype pollution, CVE-2023-26136, fixed in 4.1.3); @snyk/docker-registry-v2-client brings its own HTTP
 * stack (needle), so neither Node's fetch nor the fetch the tests inject (faults, resumed ranges) could be used.
 * The protocol is a handful of GETs; what they return is checked against its digest (verify, ../oci.ts).
 */
import { ErrorCode, invalidArgument, notFound, ServiceError } from '@berth/common/errors';
import { type Descriptor, isIndex, isManifest, sha256 } from '@berth/common/oci';
import { manifestAccept, verify } from '../oci.js';
import type { Reference } from '../reference.js';
import { type Challenge, type Credentials, fetchToken, parseChallenges, pullScope } from './auth.js';

export interface RegistryOptions {
  /** Talk HTTP instead of HTTPS (ctr's `--plain-http`). */
  readonly plainHttp?: boolean | undefined;
  readonly credentials?: Credentials | undefined;
  /** The fetch to use; default the global (undici). Tests pass a wrapper to inject faults. */
  readonly fetch?: typeof fetch | undefined;
  readonly userAgent?: string | undefined;
}

/** Bytes of a blob from `start` on; `start` is 0 when the registry ignored the Range asked for. */
export interface BlobStream {
  readonly start: number;
  readonly body: AsyncIterable<Uint8Array>;
}

/** Manifests and configs are read into memory; anything larger than this is not a sane document. */
const maxDocumentBytes = 64 * 1024 * 1024;

export class RegistryClient {
  private readonly base: string;
  private readonly fetch: typeof fetch;
  private challenge: Challenge | undefined;
  private authorization: Promise<{ header: string; expiresAt: number } | undefined> | undefined;

  constructor(
    readonly ref: Reference,
    private readonly opts: RegistryOptions = {},
  ) {
    this.base = `${opts.plainHttp ? 'http' : 'https'}://${ref.host}/v2/${ref.repository}`;
    this.fetch = opts.fetch ?? fetch;
  }

  /** The descriptor `ref` names (tag or digest): media type, digest and size of the top manifest or index. */
  async resolve(signal?: AbortSignal): Promise<Descriptor> {
    const path = `/manifests/${this.ref.object}`;
    const head = await this.request(path, { method: 'HEAD', headers: { accept: manifestAccept } }, signal);
    if (head.ok) {
      const digest = this.ref.digest ?? head.headers.get('docker-content-digest') ?? '';
      const size = Number(head.headers.get('content-length') ?? NaN);
      const mediaType = (head.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
      if (digest && Number.isSafeInteger(size) && mediaType && (isIndex(mediaType) || isManifest(mediaType))) {
        return { mediaType, digest, size };
      }
    } else if (head.status !== 405 && head.status !== 400) {
      throw this.httpError(head, `resolve ${this.ref.name}`);
    }
    // Registries that do not answer HEAD usefully: read the document and name it by its own digest.
    const res = await this.request(path, { headers: { accept: manifestAccept } }, signal);
    if (!res.ok) throw this.httpError(res, `resolve ${this.ref.name}`);
    const data = await readLimited(res, maxDocumentBytes);
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0]?.trim() ?? '';
    const digest = this.ref.digest ?? sha256(data);
    if (!isIndex(mediaType) && !isManifest(mediaType)) {
      throw invalidArgument(`resolve ${this.ref.name}: unsupported manifest media type ${JSON.stringify(mediaType)}`);
    }
    return { mediaType, digest, size: data.length };
  }

  /** A manifest, index or config, read whole and verified against `desc`. */
  async fetchDocument(desc: Descriptor, signal?: AbortSignal): Promise<Buffer> {
    if (desc.size > maxDocumentBytes)
      throw invalidArgument(`${desc.digest}: ${desc.size} bytes is too large for a ${desc.mediaType}`);
    const manifest = isIndex(desc.mediaType) || isManifest(desc.mediaType);
    const path = manifest ? `/manifests/${desc.digest}` : `/blobs/${desc.digest}`;
    const res = await this.request(
      path,
      { headers: manifest ? { accept: `${desc.mediaType}, ${manifestAccept}` } : {} },
      signal,
    );
    if (!res.ok) throw this.httpError(res, `fetch ${desc.digest}`);
    const data = await readLimited(res, desc.size);
    verify(desc, data);
    return data;
  }

  /** Streams a blob from `offset` (HTTP Range when offset > 0). The caller verifies the digest (Content.Write does). */
  async openBlob(desc: Descriptor, offset: number, signal?: AbortSignal): Promise<BlobStream> {
    const headers: Record<string, string> = offset > 0 ? { range: `bytes=${offset}-` } : {};
    const res = await this.request(`/blobs/${desc.digest}`, { headers }, signal);
    if (!res.ok || !res.body) throw this.httpError(res, `fetch ${desc.digest}`);
    let start = 0;
    if (res.status === 206) {
      const m = /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '');
      start = m?.[1] === undefined ? offset : Number(m[1]);
      if (start !== offset) {
        await res.body.cancel();
        throw new ServiceError(ErrorCode.Unknown, `fetch ${desc.digest}: asked for bytes from ${offset}, got ${start}`);
      }
    }
    return { start, body: res.body };
  }

  private async request(
    path: string,
    init: { method?: string; headers?: Record<string, string> },
    signal?: AbortSignal,
  ): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const headers: Record<string, string> = { ...init.headers };
      if (this.opts.userAgent) headers['user-agent'] = this.opts.userAgent;
      let sentWith = this.authorization;
      let current = await sentWith;
      if (current && current.expiresAt <= Date.now() && this.authorization === sentWith) {
        this.authorization = this.authorize(signal);
        sentWith = this.authorization;
        current = await sentWith;
      }
      if (current) headers['authorization'] = current.header;
      const res = await this.fetch(`${this.base}${path}`, {
        method: init.method ?? 'GET',
        headers,
        signal,
        redirect: 'follow',
      });
      if (res.status !== 401 || attempt > 0) return res;
      const challenges = parseChallenges(res.headers.get('www-authenticate') ?? '');
      const challenge = challenges.find((c) => c.scheme === 'bearer') ?? challenges.find((c) => c.scheme === 'basic');
      if (!challenge) return res;
      await res.body?.cancel();
      // Requests that raced into the same 401 share the one token request the first of them starts.
      if (this.authorization === sentWith) {
        this.challenge = challenge;
        this.authorization = this.authorize(signal);
      }
    }
  }

  private async authorize(signal?: AbortSignal): Promise<{ header: string; expiresAt: number } | undefined> {
    const c = this.challenge;
    if (!c) return undefined;
    if (c.scheme === 'basic') {
      if (!this.opts.credentials) return undefined;
      const { username, password } = this.opts.credentials;
      return {
        header: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`,
        expiresAt: Number.POSITIVE_INFINITY,
      };
    }
    const t = await fetchToken(c, pullScope(this.ref.repository), {
      credentials: this.opts.credentials,
      fetch: this.fetch,
      signal,
    });
    return { header: `Bearer ${t.token}`, expiresAt: t.expiresAt };
  }

  private httpError(res: Response, what: string): ServiceError {
    void res.body?.cancel().catch(() => undefined);
    if (res.status === 404) return notFound(`${what}`);
    const code =
      res.status === 401
        ? ErrorCode.Unauthenticated
        : res.status === 403
          ? ErrorCode.PermissionDenied
          : res.status === 429
            ? ErrorCode.ResourceExhausted
            : res.status >= 500
              ? ErrorCode.Unavailable
              : ErrorCode.Unknown;
    return new ServiceError(code, `${what}: unexpected status from ${this.ref.host}: ${res.status} ${res.statusText}`);
  }
}

async function readLimited(res: Response, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  if (res.body) {
    for await (const c of res.body) {
      n += c.length;
      if (n > limit) {
        await res.body.cancel().catch(() => undefined);
        break;
      }
      chunks.push(Buffer.from(c.buffer, c.byteOffset, c.length));
    }
  }
  return Buffer.concat(chunks);
}
