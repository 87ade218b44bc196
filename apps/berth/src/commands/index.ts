import type { Command } from '../command.js';
import { eventsCommand } from './events.js';

/** Every `berth` command, by name. Add new commands here (one file each in this folder). */
export const commands: readonly Command[] = [eventsCommand];
