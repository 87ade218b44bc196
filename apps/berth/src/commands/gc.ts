import { parseArgs } from 'node:util';
import { formatBytes } from '@berth/client';
import { type CollectionStats, gcClient } from '@berth/gc/client';
import type { Command } from '../command.js';

const usage = `usage: berth gc [--json]

Runs a garbage collection now, as containerd's sync deletes do, and prints what it freed: the records it
removed (expired leases and images, unreferenced content, ingests and snapshots) and the bytes the content
backend and the nodes' snapshot directories gave back.

  --json   print the collection's statistics as JSON`;

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** The lines `berth gc` prints for a collection. */
export function describeCollection(s: CollectionStats): string[] {
  const lines = [
    `collected in ${s.elapsedMs.toFixed(1)} ms (writers paused ${s.pauseMs.toFixed(1)} ms; ` +
      `mark ${s.phases.markMs.toFixed(1)} ms, sweep ${s.phases.sweepMs.toFixed(1)} ms, ` +
      `content ${s.phases.contentMs.toFixed(1)} ms, snapshots ${s.phases.snapshotsMs.toFixed(1)} ms)`,
    `removed: ${[
      plural(s.removed.images, 'image'),
      plural(s.removed.leases, 'lease'),
      plural(s.removed.blobs, 'content record'),
      plural(s.removed.ingests, 'ingest'),
      plural(s.removed.snapshots, 'snapshot'),
    ].join(', ')}`,
    `freed: ${plural(s.content.blobsDeleted, 'blob')} (${formatBytes(s.content.bytesFreed)}), ` +
      `${plural(s.content.ingestsDeleted, 'ingest')}, snapshot directories on ${plural(s.snapshots.nodes.length, 'node')}`,
  ];
  if (s.content.failures > 0) lines.push(`backend deletes failed and skipped: ${s.content.failures}`);
  if (s.snapshots.skipped.length > 0)
    lines.push(`nodes that did not answer in time: ${s.snapshots.skipped.join(', ')}`);
  return lines;
}

/** `berth gc`. */
export const gcCommand: Command = {
  name: 'gc',
  summary: 'run a garbage collection and print what it freed',
  usage,
  async run(args, global, io, signal) {
    const { values } = parseArgs({ args: [...args], options: { json: { type: 'boolean', default: false } } });
    const client = gcClient(global.address);
    try {
      const stats = await client.collect({ namespace: global.namespace, lease: undefined, signal });
      if (values.json) io.out(JSON.stringify(stats, null, 2));
      else for (const line of describeCollection(stats)) io.out(line);
      return 0;
    } finally {
      client.close();
    }
  },
};
