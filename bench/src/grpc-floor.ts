/**
 * The floor of a grpc-js server for the metadata bench: Images.List and Content.Info/Read answered from
 * messages built at start, in memory, with no store, cache or validation behind them. What `ctr images ls`
 * takes against it is what grpc-js and Node's HTTP/2 cost per call on this machine; a Berth service can
 * approach it, not go below it.
 *
 *   node bench/dist/grpc-floor.js <socket> <images>
 */
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { adaptorFromObject, parseFilters } from '@berth/common/filters/index';
import {
  ContentService,
  type InfoRequest,
  type InfoResponse,
  type ReadContentRequest,
  type ReadContentResponse,
} from '@berth/proto/containerd/services/content/v1/content';
import {
  type Image,
  ImagesService,
  type ListImagesRequest,
  type ListImagesResponse,
} from '@berth/proto/containerd/services/images/v1/images';
import { tinyImage } from '@berth/testing/tiny-image';
import * as grpc from '@grpc/grpc-js';
import { imageRecord } from './image-records.js';

const [socket, countArg] = process.argv.slice(2);
if (!socket) throw new Error('usage: grpc-floor.js <socket> <images>');
const count = Number(countArg ?? 500);

const image = tinyImage(Buffer.from('bench layer bytes'));
const now = new Date();
const blobs = new Map<string, { info: InfoResponse; read: ReadContentResponse }>();
for (const [kind, blob] of image.blobs) {
  const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`;
  const info = { digest, size: blob.length, createdAt: now, updatedAt: now, labels: image.gcLabels[kind] };
  blobs.set(digest, { info: { info }, read: { offset: 0, data: blob } });
}
const images: Image[] = Array.from({ length: count }, (_, i) => ({
  ...imageRecord(i, image),
  createdAt: now,
  updatedAt: now,
}));
const notFound = { code: grpc.status.NOT_FOUND, details: 'not found' };

const server = new grpc.Server();
server.addService(ContentService as unknown as grpc.ServiceDefinition, {
  info(call: grpc.ServerUnaryCall<InfoRequest, InfoResponse>, done: grpc.sendUnaryData<InfoResponse>) {
    const b = blobs.get(call.request.digest);
    if (b) done(null, b.info);
    else done(notFound);
  },
  read(call: grpc.ServerWritableStream<ReadContentRequest, ReadContentResponse>) {
    const b = blobs.get(call.request.digest);
    if (!b) {
      call.emit('error', notFound);
      return;
    }
    call.write(b.read);
    call.end();
  },
});
server.addService(ImagesService as unknown as grpc.ServiceDefinition, {
  list(
    call: grpc.ServerUnaryCall<ListImagesRequest, ListImagesResponse>,
    done: grpc.sendUnaryData<ListImagesResponse>,
  ) {
    const filter = parseFilters(call.request.filters);
    const matching = images.filter((i) => filter.match(adaptorFromObject({ name: i.name, labels: i.labels })));
    done(null, { images: matching });
  },
});
rmSync(socket, { force: true });
server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => {
  if (e) throw e;
  process.stdout.write('listening\n');
});
process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
