import { parseArgs } from 'node:util';
import { ServiceError } from '@berth/common/errors';
import { type EventEnvelope, remoteEvents } from '@berth/events/client';
import { ctrEventLine } from '@berth/events/payloads';
import { type Command, type GlobalOptions, type Output, UsageError } from '../command.js';

const usage = `usage: berth events [--since TIME|DURATION] [--from-seq N] [--seq] [--node] [FILTER…]

Prints events as \`ctr events\` does: <timestamp> <namespace> <topic> <json(event)>.
Filters use containerd's syntax and are OR-ed, e.g.
  berth events 'topic=="/tasks/exit"' 'topic~="/images/",namespace==default' 'event.name==web'

  --since TIME|DURATION  first replay the retained events from TIME (RFC 3339) or DURATION ago (90s, 10m, 1h30m)
  --from-seq N           first replay the retained events from stream sequence N
  --seq                  prefix each line with the event's stream sequence (resume later with --from-seq seq+1)
  --node                 prefix each line (after the sequence) with the node that published the event (- if unknown)
Without --since/--from-seq only new events are shown. Without --seq/--node the lines are exactly ctr's and come
through containerd's Events.Subscribe; with them, through Berth's EventsReplay.`;

/** `berth events`: watch (and with --since/--from-seq, replay) the event stream through the node socket. */
export const eventsCommand: Command = {
  name: 'events',
  summary: 'watch events, filtered, optionally replayed from a time or a sequence',
  usage,
  async run(args, global, io, signal) {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        since: { type: 'string' },
        'from-seq': { type: 'string' },
        seq: { type: 'boolean', default: false },
        node: { type: 'boolean', default: false },
      },
    });
    const since = values.since === undefined ? undefined : parseSince(values.since, new Date());
    const fromSeq = values['from-seq'] === undefined ? undefined : parseSeq(values['from-seq']);
    if (since && fromSeq !== undefined) throw new UsageError('--since and --from-seq exclude each other');
    if (values.seq || values.node || since || fromSeq !== undefined) {
      return replay(global, io, signal, {
        filters: positionals,
        fromSeq: fromSeq ?? 0,
        since,
        withSeq: values.seq,
        withNode: values.node,
      });
    }
    return live(global, io, signal, positionals);
  },
};

/** containerd's Events.Subscribe, as `ctr events` calls it. */
function live(global: GlobalOptions, io: Output, signal: AbortSignal, filters: string[]): Promise<number> {
  const client = remoteEvents(global.address);
  const events = client.subscribe(callContext(global, signal), filters);
  return drain(events, client, io, signal, (e) => print(io, e));
}

/** Berth's EventsReplay.Subscribe: the same stream, from a point, with sequence numbers. */
function replay(
  global: GlobalOptions,
  io: Output,
  signal: AbortSignal,
  req: { filters: string[]; fromSeq: number; since: Date | undefined; withSeq: boolean; withNode: boolean },
): Promise<number> {
  const client = remoteEvents(global.address);
  // --seq alone still needs a starting point the server understands: "new" is from_seq 0 with no since.
  const events = client.replay(callContext(global, signal), {
    filters: req.filters,
    fromSeq: req.fromSeq,
    since: req.since,
  });
  return drain(events, client, io, signal, (m) => {
    if (!m.envelope) return;
    const prefix = [...(req.withSeq ? [String(m.seq)] : []), ...(req.withNode ? [m.node || '-'] : [])];
    print(io, m.envelope, prefix);
  });
}

/** The namespace header on every call, as ctr sends it; no lease. */
const callContext = (global: GlobalOptions, signal: AbortSignal) => ({
  namespace: global.namespace,
  lease: undefined,
  signal,
});

function print(io: Output, e: EventEnvelope, prefix: readonly string[] = []): void {
  const line = ctrEventLine({
    timestamp: e.timestamp ?? new Date(0),
    namespace: e.namespace,
    topic: e.topic,
    event: e.event,
  });
  // ctr skips what it cannot decode, with a warning; so do we.
  if (line === undefined)
    io.err(`warning: cannot unmarshal an event from Any (type ${JSON.stringify(e.event?.typeUrl ?? '')}), skipped`);
  else io.out([...prefix, line].join(' '));
}

/** Reads the stream until it ends, fails, or the user interrupts. */
async function drain<T>(
  events: AsyncIterable<T>,
  client: { close(): void },
  io: Output,
  signal: AbortSignal,
  onItem: (item: T) => void,
): Promise<number> {
  try {
    for await (const item of events) onItem(item);
    return 0;
  } catch (e) {
    if (signal.aborted) return 0;
    io.err(`berth: ${failure(e)}`);
    return 1;
  } finally {
    client.close();
  }
}

/** The server's message (a gRPC status's details), else the error's own text. */
function failure(e: unknown): string {
  if (e instanceof ServiceError && e.message) return e.message;
  const cause = e instanceof Error ? e.cause : undefined;
  return cause instanceof Error ? cause.message : e instanceof Error ? e.message : String(e);
}

/** An RFC 3339 time, or a duration before `now` in Go's notation (`90s`, `10m`, `1h30m`, `1.5h`). */
export function parseSince(v: string, now: Date): Date {
  const units: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
  const parts = [...v.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)];
  if (parts.length > 0 && parts.map((p) => p[0]).join('') === v) {
    const ms = parts.reduce((sum, p) => sum + Number(p[1]) * (units[p[2] ?? ''] ?? 0), 0);
    return new Date(now.getTime() - ms);
  }
  if (/^\d{4}-\d\d-\d\dT/.test(v)) {
    const t = new Date(v);
    if (!Number.isNaN(t.getTime())) return t;
  }
  throw new UsageError(`--since: ${JSON.stringify(v)} is neither an RFC 3339 time nor a duration (90s, 10m, 1h30m)`);
}

function parseSeq(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || n < 1)
    throw new UsageError(`--from-seq: ${JSON.stringify(v)} is not a positive integer`);
  return n;
}
