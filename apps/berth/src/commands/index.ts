import type { Command } from '../command.js';
import { eventsCommand } from './events.js';
import { gcCommand } from './gc.js';
import { imagesCommand } from './images.js';
import { pullCommand } from './pull.js';
import { rmiCommand } from './rmi.js';
import { snapshotsCommand } from './snapshots.js';

/** Every `berth` command, by name. Add new commands here (one file each in this folder). */
export const commands: readonly Command[] = [
  eventsCommand,
  pullCommand,
  imagesCommand,
  rmiCommand,
  snapshotsCommand,
  gcCommand,
];
