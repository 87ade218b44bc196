import { readFile } from 'node:fs/promises';

/** User + system CPU time of process `pid` so far, from /proc (clock ticks of 10 ms). */
export async function cpuMs(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0;
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) * 10;
}
