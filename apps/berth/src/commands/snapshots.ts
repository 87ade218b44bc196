import { parseArgs } from 'node:util';
import { connectNode, listSnapshots } from '@berth/client';
import { type Command, UsageError } from '../command.js';
import { table } from './table.js';

const usage = `usage: berth snapshots [--snapshotter NAME] ls [FILTER…]

Lists the snapshots of a snapshotter (default overlayfs) as \`ctr snapshots ls\` does: KEY PARENT KIND.
Filters use containerd's syntax, e.g. 'kind==committed'.`;

/** `berth snapshots ls`. */
export const snapshotsCommand: Command = {
  name: 'snapshots',
  summary: 'list snapshots (snapshots ls)',
  usage,
  async run(args, global, io, signal) {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: { snapshotter: { type: 'string', default: 'overlayfs' } },
    });
    const [sub, ...filters] = positionals;
    if (sub !== 'ls' && sub !== 'list') throw new UsageError(usage);
    const node = connectNode(global.address);
    try {
      const snaps = await listSnapshots(
        node,
        { namespace: global.namespace, lease: undefined, signal },
        values.snapshotter,
        filters,
      );
      snaps.sort((a, b) => a.key.localeCompare(b.key));
      for (const line of table(
        ['KEY', 'PARENT', 'KIND'],
        snaps.map((s) => [s.key, s.parent, s.kind]),
      ))
        io.out(line);
      return 0;
    } finally {
      node.close();
    }
  },
};
