import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const biome = join(repo, 'node_modules/.bin/biome');

/** Lints a small throwaway workspace with the repository's own rules and returns biome's diagnostics. */
async function lint(dir: string, files: Record<string, string>): Promise<{ code: number; out: string }> {
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  try {
    const r = await promisify(execFile)(biome, ['lint', '--max-diagnostics=50', '.'], { cwd: dir });
    return { code: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, out: err.stdout + err.stderr };
  }
}

describe('the linter keeps package boundaries', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'berth-lint-'));
    // The repository's configuration, less its git integration (the fixture is no repository).
    const config = (await readFile(join(repo, 'biome.jsonc'), 'utf8')).replace(/"vcs":\s*\{[^}]*\},/, '');
    await writeFile(join(dir, 'biome.jsonc'), config);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses an import cycle, type-only imports included', async () => {
    const r = await lint(join(dir, 'cycle'), {
      'biome.jsonc': '{ "extends": "//" }',
      'a.ts': "import type { B } from './b.js';\nexport interface A { b?: B }\n",
      'b.ts': "import type { A } from './a.js';\nexport interface B { a?: A }\n",
    });
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('lint/suspicious/noImportCycles');
  });

  it("refuses reaching into another package's files, by name or by relative path", async () => {
    const r = await lint(join(dir, 'deep'), {
      'biome.jsonc': '{ "extends": "//" }',
      'services/x/src/a.ts':
        "import { y } from '@berth/common/src/errors.js';\nimport { z } from '../../../libs/common/src/log.js';\nexport const a = [y, z];\n",
    });
    expect(r.code).not.toBe(0);
    expect(r.out.match(/lint\/style\/noRestrictedImports/g)?.length).toBe(2);
  });

  it('refuses a relative import that climbs four levels, or into a sibling package', async () => {
    const r = await lint(join(dir, 'climb'), {
      'biome.jsonc': '{ "extends": "//" }',
      'services/x/src/d/a.ts': "import { z } from '../../../../libs/common/src/log.js';\nexport const a = z;\n",
      'services/x/src/b.ts': "import { y } from '../../y/src/log.js';\nexport const b = y;\n",
    });
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/services\/x\/src\/d\/a\.ts:1:\d+ lint\/style\/noRestrictedImports/);
    expect(r.out).toMatch(/services\/x\/src\/b\.ts:1:\d+ lint\/style\/noRestrictedImports/);
  });

  it('accepts relative imports between src/ and test/ of one package', async () => {
    const r = await lint(join(dir, 'own'), {
      'biome.jsonc': '{ "extends": "//" }',
      'services/x/test/u/h.ts': "import { a } from '../../src/d/a.js';\nexport const h = a;\n",
      'services/x/src/d/a.ts': "import { b } from '../b.js';\nexport const a = b;\n",
      'services/x/src/b.ts': 'export const b = 1;\n',
    });
    expect(r.out).not.toContain('noRestrictedImports');
    expect(r.code).toBe(0);
  });

  it('accepts imports through exports maps and within a package', async () => {
    const r = await lint(join(dir, 'fine'), {
      'biome.jsonc': '{ "extends": "//" }',
      'services/x/src/a.ts':
        "import { y } from '@berth/common/errors';\nimport { z } from './b.js';\nexport const a = [y, z];\n",
      'services/x/src/b.ts': 'export const z = 1;\n',
    });
    expect(r.out).not.toContain('noRestrictedImports');
    expect(r.out).not.toContain('noImportCycles');
    expect(r.code).toBe(0);
  });
});
