#!/usr/bin/env node
// Regenerates libs/proto/src/gen from libs/proto/proto with buf + ts-proto (see buf.gen.yaml).
//
//   node scripts/gen.mjs           wipe src/gen and regenerate it
//   node scripts/gen.mjs --check   generate into a temp dir and exit 1 if it differs from src/gen
//
// Works offline: buf bundles the google/protobuf well-known types and ts-proto runs as a local plugin.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const genRel = join('src', 'gen');
const bufBin = join(pkgDir, 'node_modules', '.bin', process.platform === 'win32' ? 'buf.cmd' : 'buf');
const pluginBin = join(pkgDir, 'node_modules', '.bin', 'protoc-gen-ts_proto');

function die(msg) {
  console.error(`gen: ${msg}`);
  process.exit(1);
}

for (const bin of [bufBin, pluginBin]) {
  if (!existsSync(bin)) die(`${relative(pkgDir, bin)} not found; run pnpm install first`);
}

/** Runs `buf generate`; outputs land in <baseDir>/src/gen. */
function generate(baseDir) {
  const args = ['generate', '--template', 'buf.gen.yaml'];
  if (baseDir !== pkgDir) args.push('--output', baseDir);
  const r = spawnSync(bufBin, args, { cwd: pkgDir, stdio: 'inherit' });
  if (r.error) die(`failed to run buf: ${r.error.message}`);
  if (r.status !== 0) die(`buf generate exited with ${r.status ?? r.signal}`);
}

/** Relative paths of all files below dir (sorted), or [] if dir is missing. */
function listFiles(dir) {
  if (!existsSync(dir)) return [];
  const out = [];
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

if (process.argv.includes('--check')) {
  const tmp = mkdtempSync(join(tmpdir(), 'berth-proto-gen-'));
  try {
    generate(tmp);
    const fresh = join(tmp, genRel);
    const committed = join(pkgDir, genRel);
    const a = new Set(listFiles(fresh));
    const b = new Set(listFiles(committed));
    const problems = [];
    for (const f of a) {
      if (!b.has(f)) problems.push(`missing:  ${join(genRel, f)}`);
      else if (!readFileSync(join(fresh, f)).equals(readFileSync(join(committed, f))))
        problems.push(`differs:  ${join(genRel, f)}`);
    }
    for (const f of b) if (!a.has(f)) problems.push(`stale:    ${join(genRel, f)}`);
    if (problems.length > 0) {
      console.error(`gen --check: ${genRel} is out of date (run \`node scripts/gen.mjs\`):`);
      for (const p of problems) console.error(`  ${p}`);
      process.exit(1);
    }
    console.log(`gen --check: ${genRel} is up to date (${a.size} files)`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
} else {
  rmSync(join(pkgDir, genRel), { recursive: true, force: true });
  generate(pkgDir);
  console.log(`gen: wrote ${listFiles(join(pkgDir, genRel)).length} files to ${genRel}`);
}
