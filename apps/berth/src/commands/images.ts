import { parseArgs } from 'node:util';
import { connectNode, formatBytes, listImages } from '@berth/client';
import { type Command, UsageError } from '../command.js';
import { table } from './table.js';

const usage = `usage: berth images ls [-q] [FILTER…]

Lists the images of the namespace as \`ctr images ls\` does: REF TYPE DIGEST SIZE PLATFORMS LABELS.
SIZE is what the image needs on this host's platform. Filters use containerd's syntax, e.g. 'name~=busybox'.

  -q, --quiet   print only the image names`;

/** `berth images ls`. */
export const imagesCommand: Command = {
  name: 'images',
  summary: 'list images (images ls)',
  usage,
  async run(args, global, io, signal) {
    const [sub, ...rest] = args;
    if (sub !== 'ls' && sub !== 'list') throw new UsageError(usage);
    const { values, positionals } = parseArgs({
      args: rest,
      allowPositionals: true,
      options: { quiet: { type: 'boolean', short: 'q', default: false } },
    });
    const node = connectNode(global.address);
    try {
      const images = await listImages(node, { namespace: global.namespace, lease: undefined, signal }, positionals);
      images.sort((a, b) => a.name.localeCompare(b.name));
      if (values.quiet) {
        for (const i of images) io.out(i.name);
        return 0;
      }
      const rows = images.map((i) => {
        const labels = Object.entries(i.labels)
          .map(([k, v]) => `${k}=${v}`)
          .sort();
        return [
          i.name,
          i.target.mediaType,
          i.target.digest,
          i.size === undefined ? '-' : formatBytes(i.size),
          i.platforms.length > 0 ? i.platforms.join(',') : '-',
          labels.length > 0 ? labels.join(',') : '-',
        ];
      });
      for (const line of table(['REF', 'TYPE', 'DIGEST', 'SIZE', 'PLATFORMS', 'LABELS'], rows)) io.out(line);
      return 0;
    } finally {
      node.close();
    }
  },
};
