import { backgroundContext } from '@berth/common/context';
import { codeOf, ErrorCode } from '@berth/common/errors';
import type { ReplayFrom, StoredEvent } from '@berth/common/event-bus';
import type { Logger } from '@berth/common/log';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Exchange } from '../exchange/exchange.js';
import { goJsonString, goJsonTime, payloadJson } from '../payloads/index.js';

export interface EventStreamOptions {
  readonly exchange: Exchange;
  readonly log: Logger;
  /** Default `/v1/events`. */
  readonly path?: string;
  /** A comment line is sent this often so idle connections survive proxies. Default 15 s. */
  readonly heartbeatMs?: number;
}

type Query = Readonly<Record<string, string | string[] | undefined>>;

class BadRequest extends Error {}

/**
 * `GET /v1/events`: the event stream as Server-Sent Events, for operators. Query: `filter` (repeatable,
 * containerd's filter language, OR-ed like Subscribe's list), and where to start: `from-seq=N` or
 * `since=<RFC 3339>`; default is new events only. Each event's SSE `id` is its bus sequence, so a client
 * that reconnects with `Last-Event-ID` (as EventSource does by itself) continues right after the last event
 * it received, without loss. `data` is one JSON object: `{seq, node, timestamp, namespace, topic, type_url,
 * event}` where `node` names the node that published it ('' if unknown) and `event` is the payload as
 * `ctr events` prints it (null, with base64 `value`, if unknown).
 */
export function registerEventStream(app: FastifyInstance, opts: EventStreamOptions): void {
  const heartbeatMs = opts.heartbeatMs ?? 15_000;
  app.get(opts.path ?? '/v1/events', async (request: FastifyRequest, reply: FastifyReply) => {
    const query = (request.query ?? {}) as Query;
    let from: ReplayFrom;
    let events: AsyncIterable<StoredEvent>;
    const controller = new AbortController();
    try {
      from = startOf(query, request.headers['last-event-id']);
      const filters = list(query['filter']);
      events = opts.exchange.subscribe(backgroundContext(opts.log, undefined, controller.signal), { filters, from });
    } catch (e) {
      if (e instanceof BadRequest || codeOf(e) === ErrorCode.InvalidArgument) {
        return reply.code(400).send({ error: (e as Error).message });
      }
      throw e;
    }

    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write('retry: 1000\n\n');
    const stop = (): void => controller.abort();
    res.once('close', stop);
    const heartbeat = setInterval(() => res.write(': keepalive\n\n'), heartbeatMs);
    heartbeat.unref();
    try {
      for await (const e of events) {
        if (!res.write(frame(e))) await drained(res, controller.signal);
        if (controller.signal.aborted) break;
      }
    } catch (e) {
      opts.log.warn('event stream failed', { err: e });
    } finally {
      clearInterval(heartbeat);
      res.off('close', stop);
      controller.abort();
      res.end();
    }
  });
}

function list(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

function single(query: Query, key: string): string | undefined {
  const v = query[key];
  if (Array.isArray(v)) throw new BadRequest(`${key} must be given once`);
  return v;
}

/** Where the stream starts: after `Last-Event-ID`, else at `from-seq`, else at `since`, else new events. */
function startOf(query: Query, lastEventId: string | string[] | undefined): ReplayFrom {
  const last = Array.isArray(lastEventId) ? lastEventId[0] : lastEventId;
  if (last !== undefined && last !== '') return { kind: 'seq', seq: positiveInt('Last-Event-ID', last, true) + 1 };
  const fromSeq = single(query, 'from-seq');
  if (fromSeq !== undefined) return { kind: 'seq', seq: positiveInt('from-seq', fromSeq, false) };
  const since = single(query, 'since');
  if (since !== undefined) {
    const t = new Date(since);
    if (Number.isNaN(t.getTime())) throw new BadRequest(`since: ${JSON.stringify(since)} is not an RFC 3339 time`);
    return { kind: 'time', time: t };
  }
  return { kind: 'new' };
}

function positiveInt(what: string, v: string, zeroOk: boolean): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(n) || (n === 0 && !zeroOk)) {
    throw new BadRequest(`${what}: ${JSON.stringify(v)} is not a ${zeroOk ? 'non-negative' : 'positive'} integer`);
  }
  return n;
}

/** One SSE frame; JSON never holds a raw newline, so `data` is a single line. */
export function frame(e: StoredEvent): string {
  const json = payloadJson(e.event);
  const payload =
    json !== undefined
      ? `"event":${json}`
      : `"event":null,"value":"${Buffer.from(e.event.value.buffer, e.event.value.byteOffset, e.event.value.byteLength).toString('base64')}"`;
  const data =
    `{"seq":${e.seq},"node":${goJsonString(e.node)},"timestamp":"${goJsonTime(e.timestamp)}",` +
    `"namespace":${goJsonString(e.namespace)},"topic":${goJsonString(e.topic)},"type_url":${goJsonString(e.event.typeUrl)},${payload}}`;
  return `id: ${e.seq}\ndata: ${data}\n\n`;
}

function drained(res: NodeJS.EventEmitter, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    res.once('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}
