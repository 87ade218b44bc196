/**
 * Content ingest and read throughput of a 1 GiB random blob with the real `ctr`, against berthd
 * (all-in-one, filesystem blobs, through its node socket) and, side by side, a private containerd with an
 * isolated config when one is installed. Rounds alternate between the two so machine load hits both alike.
 *
 *   pnpm --filter @berth/bench content [--size-mib 1024] [--rounds 2]
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, statfsSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startBerthd } from '@berth/e2e/berthd';

const { values } = parseArgs({ options: { 'size-mib': { type: 'string' }, rounds: { type: 'string' } } });
const sizeMiB = Number(values['size-mib'] ?? 1024);
const rounds = Number(values.rounds ?? 2);
const bytes = sizeMiB * 1024 * 1024;

/** Runs ctr with stdin from a file (or nothing) and stdout discarded; resolves seconds taken. */
function timedCtr(socket: string, args: readonly string[], stdinFile?: string): Promise<number> {
  const fd = stdinFile ? openSync(stdinFile, 'r') : 'ignore';
  const started = process.hrtime.bigint();
  const child = spawn('ctr', ['--address', socket, ...args], { stdio: [fd, 'ignore', 'pipe'] });
  if (typeof fd === 'number') closeSync(fd);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      if (code !== 0) reject(new Error(`ctr ${args.join(' ')} exited ${code}: ${stderr}`));
      else resolve(Number(process.hrtime.bigint() - started) / 1e9);
    });
  });
}

function waitForSocket(path: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      if (child.exitCode !== null) {
        reject(new Error(`containerd exited with ${child.exitCode}`));
        return;
      }
      const s = connect(path);
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () =>
        Date.now() > deadline ? reject(new Error('containerd did not listen')) : setTimeout(attempt, 50),
      );
    };
    attempt();
  });
}

/** A containerd of our own: root, state and sockets in `dir`, CRI disabled (containerd-api.md Appendix B). */
async function startContainerd(dir: string): Promise<{ socket: string; stop(): Promise<void> } | undefined> {
  if (!['/usr/bin/containerd', '/usr/local/bin/containerd'].some((p) => existsSync(p))) return undefined;
  const socket = join(dir, 'containerd.sock');
  const config = join(dir, 'config.toml');
  writeFileSync(
    config,
    [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${socket}"`,
      '[ttrpc]',
      `  address = "${socket}.ttrpc"`,
      '',
    ].join('\n'),
  );
  const child = spawn('containerd', ['--config', config, '--log-level', 'warn'], { stdio: 'ignore' });
  await waitForSocket(socket, child, 30_000);
  return {
    socket,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

const mbps = (s: number): number => bytes / 1e6 / s;

const work = await mkdtemp(join(tmpdir(), 'berth-bench-content-'));
const fs = statfsSync(work);
if (fs.bavail * fs.bsize < 4 * bytes) throw new Error(`need ${(4 * bytes) / 2 ** 30} GiB free in ${work}`);
const file = join(work, 'blob');
/**
 * A fresh random blob per round: containerd keeps removed bytes until its GC runs and then ingests a known
 * digest without transferring it, which would measure nothing.
 */
function newBlob(): string {
  execFileSync('sh', ['-c', `head -c ${sizeMiB}M /dev/urandom > ${file}`]);
  return `sha256:${execFileSync('sha256sum', [file]).toString().split(' ')[0]}`;
}

await mkdir(join(work, 'berth'));
await mkdir(join(work, 'containerd'));
const berth = await startBerthd({ config: { 'log-level': 'warn' }, dir: join(work, 'berth') });
const containerd = await startContainerd(join(work, 'containerd'));
const targets = [
  { name: 'berth', socket: berth.socket },
  ...(containerd ? [{ name: 'containerd', socket: containerd.socket }] : []),
];
const results = new Map<string, { ingest: number[]; read: number[] }>(
  targets.map((t) => [t.name, { ingest: [], read: [] }]),
);
try {
  console.log(`ctr content ingest / get of a ${sizeMiB} MiB random blob, ${rounds} rounds; node ${process.version}`);
  for (let round = 0; round < rounds; round++) {
    for (const t of round % 2 === 0 ? targets : [...targets].reverse()) {
      const r = results.get(t.name);
      if (!r) continue;
      const ref = `bench-${round}`;
      const digest = newBlob();
      const ingest = await timedCtr(
        t.socket,
        ['content', 'ingest', '--expected-size', String(bytes), '--expected-digest', digest, ref],
        file,
      );
      const read = await timedCtr(t.socket, ['content', 'get', digest]);
      await timedCtr(t.socket, ['content', 'rm', digest]);
      r.ingest.push(mbps(ingest));
      r.read.push(mbps(read));
      console.log(
        `  round ${round + 1} ${t.name.padEnd(10)} ingest ${mbps(ingest).toFixed(0).padStart(5)} MB/s   get ${mbps(read).toFixed(0).padStart(5)} MB/s`,
      );
    }
  }
  const best = (xs: number[]): number => Math.max(...xs);
  console.log('\nbest of rounds (MB/s, 1 MB = 10^6 bytes):');
  for (const [name, r] of results)
    console.log(
      `  ${name.padEnd(10)} ingest ${best(r.ingest).toFixed(0).padStart(5)}   get ${best(r.read).toFixed(0).padStart(5)}`,
    );
  const b = results.get('berth');
  const c = results.get('containerd');
  if (b && c && c.ingest.length > 0) {
    console.log(
      `  berth/containerd: ingest ${((100 * best(b.ingest)) / best(c.ingest)).toFixed(0)}%, get ${((100 * best(b.read)) / best(c.read)).toFixed(0)}%`,
    );
  } else {
    console.log('  containerd is not installed: no side-by-side figures');
  }
} finally {
  await berth.stop();
  await containerd?.stop();
  await rm(work, { recursive: true, force: true });
}
