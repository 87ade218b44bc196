import { parseArgs } from 'node:util';
import { connectNode, formatBytes, formatPlatform, type PullEvent, parsePlatform, pull } from '@berth/client';
import { type Command, type Output, UsageError } from '../command.js';

const usage = `usage: berth pull [--plain-http] [--platform OS/ARCH[/VARIANT]] [--snapshotter NAME] [--no-unpack]
                  [--max-concurrent-downloads N] [--user USER[:PASSWORD]] [--progress auto|tty|plain] REF

Pulls REF (e.g. 127.0.0.1:5000/test/busybox:latest, docker.io/library/busybox) from its registry into the
node's content store, registers the image and unpacks it into snapshots, as \`ctr images pull\` does.

  --plain-http                  talk HTTP to the registry instead of HTTPS
  --platform P                  the platform to pull from an index (default: this host's)
  --snapshotter NAME            default: the namespace's containerd.io/defaults/snapshotter label, else overlayfs
  --no-unpack                   fetch and register only
  --max-concurrent-downloads N  layers fetched at once (default 3)
  --user USER[:PASSWORD]        registry credentials (Basic, or for the bearer-token request)
  --progress MODE               auto (bars on a terminal, lines otherwise), tty, plain`;

/** `berth pull`: the client-side pull of @berth/client with per-layer progress. */
export const pullCommand: Command = {
  name: 'pull',
  summary: 'pull an image from a registry and unpack it',
  usage,
  async run(args, global, io, signal) {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        'plain-http': { type: 'boolean', default: false },
        platform: { type: 'string' },
        snapshotter: { type: 'string' },
        'no-unpack': { type: 'boolean', default: false },
        'max-concurrent-downloads': { type: 'string' },
        user: { type: 'string', short: 'u' },
        progress: { type: 'string', default: 'auto' },
      },
    });
    const [ref, extra] = positionals;
    if (ref === undefined || extra !== undefined) throw new UsageError(usage);
    const mode = values.progress;
    if (mode !== 'auto' && mode !== 'tty' && mode !== 'plain')
      throw new UsageError(`--progress: want auto, tty or plain, got ${JSON.stringify(mode)}`);
    const max =
      values['max-concurrent-downloads'] === undefined ? undefined : Number(values['max-concurrent-downloads']);
    if (max !== undefined && !(Number.isSafeInteger(max) && max > 0))
      throw new UsageError('--max-concurrent-downloads: want a positive integer');
    const credentials = values.user === undefined ? undefined : splitUser(values.user);
    const tty = mode === 'tty' || (mode === 'auto' && process.stdout.isTTY === true);
    const view = tty ? new TtyProgress(io) : new PlainProgress(io);

    const node = connectNode(global.address);
    const started = Date.now();
    const ticker = tty ? setInterval(() => view.render(Date.now() - started), 100) : undefined;
    try {
      const result = await pull(node, {
        ref,
        namespace: global.namespace,
        plainHttp: values['plain-http'],
        platform: values.platform === undefined ? undefined : parsePlatform(values.platform),
        snapshotter: values.snapshotter,
        unpack: !values['no-unpack'],
        maxConcurrentDownloads: max,
        credentials,
        signal,
        onEvent: (e) => view.event(e),
      });
      view.render(Date.now() - started);
      io.out(
        `done: ${result.name} ${result.target.digest} (${formatPlatform(result.platform)})` +
          `${result.snapshotter ? `, unpacked to ${result.snapshotter} ${result.chainId}` : ''}` +
          `, fetched ${formatBytes(result.fetchedBytes)} in ${((Date.now() - started) / 1000).toFixed(2)} s`,
      );
      return 0;
    } catch (e) {
      if (signal.aborted) {
        io.err('berth: pull interrupted; running it again resumes the downloads');
        return 130;
      }
      throw e;
    } finally {
      if (ticker) clearInterval(ticker);
      node.close();
    }
  },
};

function splitUser(v: string): { username: string; password: string } {
  const i = v.indexOf(':');
  return i < 0 ? { username: v, password: '' } : { username: v.slice(0, i), password: v.slice(i + 1) };
}

interface ProgressView {
  event(e: PullEvent): void;
  render(elapsedMs: number): void;
}

const short = (digest: string): string => digest.replace(/^sha256:/, '').slice(0, 12);

/** One line per change of state: for logs and pipes. */
class PlainProgress implements ProgressView {
  private readonly started = new Set<string>();
  constructor(private readonly io: Output) {}
  event(e: PullEvent): void {
    switch (e.type) {
      case 'resolved':
        this.io.out(`${e.name}: resolved ${e.target.mediaType} ${e.target.digest}`);
        break;
      case 'platform':
        this.io.out(
          `${formatPlatform(e.platform)}: manifest ${e.manifest.digest}, ${e.layers.length} layers, ${formatBytes(e.layers.reduce((s, l) => s + l.size, 0))}`,
        );
        break;
      case 'blob':
        if (e.state === 'downloading' && !this.started.has(e.desc.digest)) {
          this.started.add(e.desc.digest);
          if (e.resumedFrom > 0)
            this.io.out(
              `${e.kind}-${short(e.desc.digest)}: resuming at ${formatBytes(e.resumedFrom)} of ${formatBytes(e.desc.size)}`,
            );
        } else if (e.state === 'exists')
          this.io.out(`${e.kind}-${short(e.desc.digest)}: exists ${formatBytes(e.desc.size)}`);
        else if (e.state === 'done') this.io.out(`${e.kind}-${short(e.desc.digest)}: done ${formatBytes(e.desc.size)}`);
        break;
      case 'unpack':
        if (e.state !== 'applying')
          this.io.out(
            `layer-${short(e.desc.digest)}: ${e.state === 'done' ? 'unpacked' : 'already unpacked'} as ${e.chainId}`,
          );
        break;
      case 'image':
        this.io.out(`${e.name}: image ${e.created ? 'created' : 'updated'}`);
        break;
    }
  }
  render(): void {}
}

interface Row {
  label: string;
  state: string;
  offset: number;
  total: number;
}

/** Progress bars redrawn in place (ANSI cursor-up), like ctr's on a terminal. */
class TtyProgress implements ProgressView {
  private readonly rows = new Map<string, Row>();
  private drawn = 0;
  private title = '';
  constructor(private readonly io: Output) {}

  event(e: PullEvent): void {
    if (e.type === 'resolved') this.title = `${e.name}: ${e.target.digest}`;
    if (e.type === 'blob') {
      const row = this.row(`${e.kind}-${short(e.desc.digest)}`, e.desc.size);
      row.state = e.state;
      row.offset = e.offset;
    }
    if (e.type === 'unpack') {
      const row = this.row(`layer-${short(e.desc.digest)}`, e.desc.size);
      row.state = e.state === 'applying' ? 'unpacking' : e.state === 'done' ? 'unpacked' : 'exists';
    }
  }

  private row(label: string, total: number): Row {
    let r = this.rows.get(label);
    if (!r) {
      r = { label, state: 'waiting', offset: 0, total };
      this.rows.set(label, r);
    }
    return r;
  }

  render(elapsedMs: number): void {
    const width = 40;
    const lines = [this.title];
    let done = 0;
    for (const r of this.rows.values()) {
      const frac = r.total === 0 ? 1 : Math.min(1, r.offset / r.total);
      done += r.offset;
      const fill = Math.round(frac * width);
      lines.push(
        `${r.label.padEnd(21)} ${r.state.padEnd(11)} |${'+'.repeat(fill)}${'-'.repeat(width - fill)}| ${formatBytes(r.offset)}/${formatBytes(r.total)}`,
      );
    }
    lines.push(`elapsed: ${(elapsedMs / 1000).toFixed(1)} s   total: ${formatBytes(done)}`);
    // Move up over the previous frame and overwrite it line by line.
    const up = this.drawn > 0 ? `\x1b[${this.drawn}A` : '';
    for (const [i, l] of lines.entries()) this.io.out(`${i === 0 ? up : ''}\x1b[2K${l}`);
    this.drawn = lines.length;
  }
}
