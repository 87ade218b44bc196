import { parseArgs } from 'node:util';
import { connectNode, removeImage } from '@berth/client';
import { isNotFound } from '@berth/common/errors';
import { type Command, UsageError } from '../command.js';

const usage = `usage: berth rmi [--sync] REF…

Removes images by name, as \`ctr images rm\` does; garbage collection then frees the content and snapshots
only they used. A name that does not exist is reported and the exit code is 1.

  --sync   wait until garbage collection has run`;

/** `berth rmi`. */
export const rmiCommand: Command = {
  name: 'rmi',
  summary: 'remove images',
  usage,
  async run(args, global, io, signal) {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: { sync: { type: 'boolean', default: false } },
    });
    if (positionals.length === 0) throw new UsageError(usage);
    const node = connectNode(global.address);
    let code = 0;
    try {
      for (const name of positionals) {
        try {
          await removeImage(node, { namespace: global.namespace, lease: undefined, signal }, name, values.sync);
          io.out(name);
        } catch (e) {
          if (!isNotFound(e)) throw e;
          io.err(`berth: image ${JSON.stringify(name)}: not found`);
          code = 1;
        }
      }
      return code;
    } finally {
      node.close();
    }
  },
};
