/**
 * Registry authentication: the `WWW-Authenticate` challenges a registry answers 401 with, and the
 * Docker token protocol (Bearer realm/service/scope → GET the realm → `{token | access_token}`).
 */
import { ErrorCode, ServiceError } from '@berth/common/errors';

export interface Challenge {
  /** Lower-case scheme: `bearer`, `basic`. */
  readonly scheme: string;
  readonly params: Readonly<Record<string, string>>;
}

/**
 * Parses a `WWW-Authenticate` header (RFC 7235): one or more `Scheme k=v, k="quoted, value"` challenges.
 * Unparseable parts are skipped rather than failing the pull: the registry decides what it accepts.
 */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const s = header;
  const skipWs = (): void => {
    while (i < s.length && (s[i] === ' ' || s[i] === '\t')) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < s.length && /[!#$%&'*+.^_`|~0-9A-Za-z-]/.test(s[i] ?? '')) i++;
    return s.slice(start, i);
  };
  let current: { scheme: string; params: Record<string, string> } | undefined;
  while (i < s.length) {
    skipWs();
    if (s[i] === ',') {
      i++;
      continue;
    }
    const word = token();
    if (word === '') {
      i++;
      continue;
    }
    skipWs();
    if (s[i] === '=') {
      i++;
      skipWs();
      let value = '';
      if (s[i] === '"') {
        i++;
        while (i < s.length && s[i] !== '"') {
          if (s[i] === '\\' && i + 1 < s.length) i++;
          value += s[i];
          i++;
        }
        i++;
      } else {
        // Strictly a token, but be lenient: registries in the wild send bare URLs here.
        const start = i;
        while (i < s.length && s[i] !== ',' && s[i] !== ' ' && s[i] !== '\t') i++;
        value = s.slice(start, i);
      }
      if (current) current.params[word.toLowerCase()] = value;
    } else {
      current = { scheme: word.toLowerCase(), params: {} };
      out.push(current);
    }
  }
  return out;
}

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

/** `repository:<name>:pull` — the scope a pull needs. */
export function pullScope(repository: string): string {
  return `repository:${repository}:pull`;
}

/**
 * Gets a bearer token from the challenge's realm for `scope` (the challenge's own scope wins when it names
 * one). Anonymous unless credentials are given (then HTTP Basic on the token request, as Docker does).
 */
export async function fetchToken(
  challenge: Challenge,
  scope: string,
  opts: { credentials?: Credentials | undefined; fetch: typeof fetch; signal?: AbortSignal | undefined },
): Promise<{ token: string; expiresAt: number }> {
  const realm = challenge.params['realm'];
  if (!realm) throw new ServiceError(ErrorCode.Unauthenticated, 'bearer challenge without a realm');
  const url = new URL(realm);
  if (challenge.params['service']) url.searchParams.set('service', challenge.params['service']);
  for (const s of (challenge.params['scope'] ?? scope).split(' ')) if (s) url.searchParams.append('scope', s);
  const headers: Record<string, string> = {};
  if (opts.credentials) {
    headers['authorization'] =
      `Basic ${Buffer.from(`${opts.credentials.username}:${opts.credentials.password}`).toString('base64')}`;
  }
  const res = await opts.fetch(url, { headers, signal: opts.signal });
  if (!res.ok) {
    const text = await res.text().catch(() => '');
    throw new ServiceError(
      ErrorCode.Unauthenticated,
      `fetch token from ${url.origin}${url.pathname}: HTTP ${res.status} ${text.slice(0, 200)}`.trim(),
    );
  }
  const body = (await res.json()) as { token?: unknown; access_token?: unknown; expires_in?: unknown };
  const token =
    typeof body.token === 'string' && body.token
      ? body.token
      : typeof body.access_token === 'string'
        ? body.access_token
        : '';
  if (!token)
    throw new ServiceError(ErrorCode.Unauthenticated, `token endpoint ${url.origin}${url.pathname} returned no token`);
  // The spec's default lifetime is 60 s; renew a little early.
  const lifetime = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : 60;
  return { token, expiresAt: Date.now() + Math.max(1, lifetime - 10) * 1000 };
}
