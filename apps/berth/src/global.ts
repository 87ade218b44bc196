import { type GlobalOptions, UsageError } from './command.js';

const defaultAddress = '/run/berth/berth.sock';

/** Splits the global flags (before the command name) from the command and its own arguments. */
export function parseGlobal(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
): { global: GlobalOptions; rest: string[] } {
  let address = env['BERTH_ADDRESS'] || env['CONTAINERD_ADDRESS'] || defaultAddress;
  let namespace = env['BERTH_NAMESPACE'] || env['CONTAINERD_NAMESPACE'] || 'default';
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const [flag, inline] =
      arg.startsWith('--') && arg.includes('=')
        ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)]
        : [arg, undefined];
    const value = (): string => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value`);
      return v;
    };
    if (flag === '--address' || flag === '-a') address = value();
    else if (flag === '--namespace' || flag === '-n') namespace = value();
    else break;
  }
  return { global: { address, namespace }, rest: argv.slice(i) };
}
