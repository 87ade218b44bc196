import { invalidArgument } from '@berth/common/errors';

/** An image reference split the way registries need it. */
export interface Reference {
  /** The registry as written (`docker.io`, `127.0.0.1:5000`). */
  readonly domain: string;
  /** Where to send HTTP requests (`registry-1.docker.io` for docker.io). */
  readonly host: string;
  /** The repository path (`library/busybox`, `test/app`). */
  readonly repository: string;
  readonly tag: string | undefined;
  readonly digest: string | undefined;
  /** The full, normalized name images are stored under: `domain/repository[:tag][@digest]`. */
  readonly name: string;
  /** What to ask the registry for: the digest if given, else the tag. */
  readonly object: string;
}

const component = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const tagPattern = /^[\w][\w.-]{0,127}$/;
const digestPattern = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

/**
 * Parses `[domain/]path[:tag][@digest]` with Docker's normalization: no domain means docker.io, a
 * single docker.io path component gets `library/`, no tag and no digest means `latest`.
 * Throws invalid_argument for anything a registry would reject.
 */
export function parseReference(ref: string): Reference {
  let rest = ref.trim();
  if (rest === '') throw invalidArgument('image reference must not be empty');
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!digestPattern.test(digest)) throw invalidArgument(`reference ${JSON.stringify(ref)}: invalid digest`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!tagPattern.test(tag)) throw invalidArgument(`reference ${JSON.stringify(ref)}: invalid tag`);
  }
  const slash = rest.indexOf('/');
  const first = slash < 0 ? '' : rest.slice(0, slash);
  const explicitDomain = first.includes('.') || first.includes(':') || first === 'localhost';
  let domain = explicitDomain ? first : 'docker.io';
  let repository = explicitDomain ? rest.slice(slash + 1) : rest;
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !repository.includes('/')) repository = `library/${repository}`;
  if (repository === '' || !repository.split('/').every((c) => component.test(c))) {
    throw invalidArgument(`reference ${JSON.stringify(ref)}: invalid repository name`);
  }
  if (tag === undefined && digest === undefined) tag = 'latest';
  const name = `${domain}/${repository}${tag === undefined ? '' : `:${tag}`}${digest === undefined ? '' : `@${digest}`}`;
  return {
    domain,
    host: domain === 'docker.io' ? 'registry-1.docker.io' : domain,
    repository,
    tag,
    digest,
    name,
    object: digest ?? tag ?? 'latest',
  };
}
