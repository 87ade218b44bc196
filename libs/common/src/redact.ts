/**
 * Scrubs secrets from text bound for logs, error output and metrics: the password of any URL with credentials
 * (`postgres://user:pw@host` → `postgres://user:***@host`), and every known secret value (S3 keys, tokens)
 * wherever it appears.
 */

const urlCredentials = /\b([a-z][a-z0-9+.-]*:\/\/)([^:/?#@\s"'\\]*):([^@/?#\s"'\\]+)@/gi;

export type Redact = (text: string) => string;

/** A redactor for URLs with credentials plus the given secret values (empty ones and short ones ignored). */
export function redactor(secrets: readonly string[] = []): Redact {
  // Longest first, so a secret containing another is replaced whole. Under 4 characters a "secret" would
  // shred ordinary text; such a value protects nothing anyway.
  const values = [...new Set(secrets)].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
  const variants = values.flatMap((v) => [v, JSON.stringify(v).slice(1, -1), encodeURIComponent(v)]);
  const unique = [...new Set(variants)];
  return (text) => {
    let out = text.replace(urlCredentials, '$1$2:***@');
    for (const v of unique) if (out.includes(v)) out = out.split(v).join('***');
    return out;
  };
}

/** URLs with credentials only. */
export const redactUrls: Redact = redactor();
