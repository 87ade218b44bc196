import { describe, expect, it } from 'vitest';
import { ConfigReader, urlSecrets } from './config.js';
import { createLogger } from './log.js';
import { redactor } from './redact.js';

describe('secrets never reach a log line', () => {
  it('masks the password of any URL with credentials, in the message, fields and error causes', () => {
    let out = '';
    const log = createLogger({ write: (l) => (out += l) });
    const url = 'postgres://berth:s3cr3t-pw@db.internal:5432/berth';
    log.info(`connecting to ${url}`, {
      url,
      nested: { nats: 'nats://app:t0ken-pw@nats:4222' },
      err: new Error('failed', { cause: new Error(`connect ${url}`) }),
    });
    expect(out).not.toContain('s3cr3t-pw');
    expect(out).not.toContain('t0ken-pw');
    expect(out).toContain('postgres://berth:***@db.internal:5432/berth');
    expect(out).toContain('nats://app:***@nats:4222');
  });

  it('masks known secret values wherever they appear, raw, JSON-escaped or URL-encoded', () => {
    const secret = 'AKIA"weird/key+';
    const redact = redactor([secret, 'ab']);
    let out = '';
    const log = createLogger({ write: (l) => (out += l), redact });
    log.warn('s3 said', { body: `<Key>${secret}</Key>`, q: `k=${encodeURIComponent(secret)}` });
    expect(out).not.toContain('weird');
    expect(out).toContain('***');
    expect(redact('ab stays: too short to be a secret')).toBe('ab stays: too short to be a secret');
  });
});

describe('ConfigReader.secret', () => {
  it('refuses a secret on the command line, accepts it from the environment or a file, and remembers it', async () => {
    const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'berth-secret-'));
    try {
      const withPw = 'postgres://u:pw-from-somewhere@h/db';
      const flag = new ConfigReader({ flags: { postgres: withPw } });
      expect(flag.secret('postgres', urlSecrets)).toBeUndefined();
      expect(() => flag.throwIfInvalid()).toThrow(
        /--postgres carries a secret.*set BERTH_POSTGRES, or put it in a file named by --postgres-file \/ BERTH_POSTGRES_FILE/,
      );
      // Without a password the URL is no secret: a flag is fine.
      const plain = new ConfigReader({ flags: { postgres: 'postgres://u@h/db' } });
      expect(plain.secret('postgres', urlSecrets)).toBe('postgres://u@h/db');
      expect(plain.secrets()).toEqual([]);

      const env = new ConfigReader({ env: { BERTH_POSTGRES: withPw } });
      expect(env.secret('postgres', urlSecrets)).toBe(withPw);
      expect(env.secrets()).toContain('pw-from-somewhere');

      writeFileSync(join(dir, 'key'), 'file-secret-key\n', { mode: 0o600 });
      const file = new ConfigReader({ env: { BERTH_CONTENT_S3_SECRET_KEY_FILE: join(dir, 'key') } });
      expect(file.secret('content.s3.secret-key')).toBe('file-secret-key');
      expect(file.secrets()).toEqual(['file-secret-key']);

      const missing = new ConfigReader({ file: { 'nats-file': join(dir, 'nope') } });
      expect(missing.secret('nats', urlSecrets)).toBeUndefined();
      expect(() => missing.throwIfInvalid()).toThrow(/nats-file: cannot read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
