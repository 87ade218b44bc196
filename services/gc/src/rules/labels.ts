/**
 * containerd's garbage collection labels (`metadata/gc.go`, docs/garbage-collection.md), and how a label map
 * turns into references. Values of reference labels name the referenced resource in the same namespace.
 */
export const gcLabels = {
  /** On content or a snapshot: always kept. */
  root: 'containerd.io/gc.root',
  /** `gc.ref.content`, `gc.ref.content.<name>` or `gc.ref.content/<name>`: references a blob by digest. */
  contentRef: 'containerd.io/gc.ref.content',
  /** `gc.ref.snapshot.<snapshotter>[/<name>]`: references a snapshot by key. */
  snapshotRef: 'containerd.io/gc.ref.snapshot.',
  /** On a lease or an image, RFC 3339: after this time it no longer keeps anything. */
  expire: 'containerd.io/gc.expire',
  /** On a lease: it keeps its resources, not what their labels reference. */
  flat: 'containerd.io/gc.flat',
  /** Back references: the labelled object is kept while the named one is (`gc.bref.content[.x]`, …). */
  contentBackRef: 'containerd.io/gc.bref.content',
  snapshotBackRef: 'containerd.io/gc.bref.snapshot.',
  containerBackRef: 'containerd.io/gc.bref.container',
  imageBackRef: 'containerd.io/gc.bref.image',
} as const;

/** A referenced resource; a snapshot's `key` is `<snapshotter>/<key>`, also given apart as `snapshotter`, `name`. */
export type RefTarget =
  | { readonly kind: 'content'; readonly key: string }
  | { readonly kind: 'snapshot'; readonly key: string; readonly snapshotter: string; readonly name: string }
  | { readonly kind: 'container'; readonly key: string }
  | { readonly kind: 'image'; readonly key: string };

/** `prefix` alone, or followed by `.` or `/` and a name (containerd ignores `prefixbad`). */
function namedAfter(key: string, prefix: string): boolean {
  if (!key.startsWith(prefix)) return false;
  if (key.length === prefix.length) return true;
  const sep = key[prefix.length];
  return sep === '.' || sep === '/';
}

/** `prefix<snapshotter>` or `prefix<snapshotter>/<name>` → the snapshotter. */
function snapshotterAfter(key: string, prefix: string): string | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const rest = key.slice(prefix.length);
  const slash = rest.indexOf('/');
  const snapshotter = slash >= 0 ? rest.slice(0, slash) : rest;
  return snapshotter === '' ? undefined : snapshotter;
}

/** What the labels reference (`gc.ref.*`), in label key order as containerd walks its label bucket. */
export function labelRefs(labels: Readonly<Record<string, string>>): RefTarget[] {
  const out: RefTarget[] = [];
  for (const key of Object.keys(labels).sort()) {
    const value = labels[key] ?? '';
    if (namedAfter(key, gcLabels.contentRef)) out.push({ kind: 'content', key: value });
    else {
      const ss = snapshotterAfter(key, gcLabels.snapshotRef);
      if (ss !== undefined) out.push({ kind: 'snapshot', key: `${ss}/${value}`, snapshotter: ss, name: value });
    }
  }
  return out;
}

/** The objects that reference the labelled one through back-reference labels (`gc.bref.*`). */
export function labelBackRefs(labels: Readonly<Record<string, string>>): RefTarget[] {
  const out: RefTarget[] = [];
  for (const key of Object.keys(labels).sort()) {
    const value = labels[key] ?? '';
    if (namedAfter(key, gcLabels.contentBackRef)) out.push({ kind: 'content', key: value });
    else if (namedAfter(key, gcLabels.containerBackRef)) out.push({ kind: 'container', key: value });
    else if (namedAfter(key, gcLabels.imageBackRef)) out.push({ kind: 'image', key: value });
    else {
      const ss = snapshotterAfter(key, gcLabels.snapshotBackRef);
      if (ss !== undefined) out.push({ kind: 'snapshot', key: `${ss}/${value}`, snapshotter: ss, name: value });
    }
  }
  return out;
}

/**
 * Whether `gc.expire` says the object has expired at `now`. An unparsable value is ignored (the object is
 * kept), as containerd logs and keeps it.
 */
export function expired(labels: Readonly<Record<string, string>>, now: Date): boolean {
  const v = labels[gcLabels.expire];
  if (v === undefined) return false;
  const at = parseRfc3339(v);
  return at !== undefined && now.getTime() > at;
}

const rfc3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

function parseRfc3339(v: string): number | undefined {
  if (!rfc3339.test(v)) return undefined;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : t;
}

export const isRoot = (labels: Readonly<Record<string, string>>): boolean => gcLabels.root in labels;
export const isFlat = (labels: Readonly<Record<string, string>>): boolean => gcLabels.flat in labels;
