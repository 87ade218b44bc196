/**
 * The floor of Node's own HTTP/2 for the metadata bench, under any gRPC library: the same precomputed
 * answers as grpc-floor.ts, each sent as one HEADERS, DATA and trailers exchange straight from an
 * `http2` stream handler. Not a gRPC server (no deadlines, metadata, compression or flow of messages),
 * only a measure of what a gRPC library adds on top of Node per call.
 *
 *   node bench/dist/http2-floor.js <socket> <images>
 */
import { rmSync } from 'node:fs';
import * as http2 from 'node:http2';
import { adaptorFromObject, parseFilters } from '@berth/common/filters';
import {
  InfoRequest,
  InfoResponse,
  ReadContentRequest,
  ReadContentResponse,
} from '@berth/proto/containerd/services/content/v1/content';
import { ListImagesRequest, ListImagesResponse } from '@berth/proto/containerd/services/images/v1/images';
import { precomputed } from './precomputed.js';

const [socket, countArg] = process.argv.slice(2);
if (!socket) throw new Error('usage: http2-floor.js <socket> <images>');
const answers = precomputed(Number(countArg ?? 500));

/** A gRPC length-prefixed message, uncompressed. */
function framed(message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

const info = new Map([...answers.info].map(([d, r]) => [d, framed(InfoResponse.encode(r).finish())]));
const read = new Map([...answers.read].map(([d, r]) => [d, framed(ReadContentResponse.encode(r).finish())]));
const routes: Record<string, (request: Buffer) => Buffer | undefined> = {
  '/containerd.services.content.v1.Content/Info': (b) => info.get(InfoRequest.decode(b).digest),
  '/containerd.services.content.v1.Content/Read': (b) => read.get(ReadContentRequest.decode(b).digest),
  '/containerd.services.images.v1.Images/List': (b) => {
    const filter = parseFilters(ListImagesRequest.decode(b).filters);
    const images = answers.images.filter((i) => filter.match(adaptorFromObject({ name: i.name, labels: i.labels })));
    return framed(ListImagesResponse.encode({ images }).finish());
  },
};

const server = http2.createServer();
server.on('stream', (stream, headers) => {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('error', () => undefined); // ctr resets streams it has read enough of
  stream.on('end', () => {
    const answer = routes[headers[':path'] ?? '']?.(Buffer.concat(chunks).subarray(5));
    if (!answer) {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '5' }, { endStream: true });
      return;
    }
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(answer);
  });
});
rmSync(socket, { force: true });
server.listen(socket, () => process.stdout.write('listening\n'));
process.once('SIGTERM', () => server.close(() => process.exit(0)));
