/**
 * The floor of a grpc-js server for the metadata bench: Images.List and Content.Info/Read answered from
 * messages built at start, in memory, with no store, cache or validation behind them. What `ctr images ls`
 * takes against it is what grpc-js and Node's HTTP/2 cost per call on this machine; a Berth service can
 * approach it, not go below it.
 *
 *   node bench/dist/grpc-floor.js <socket> <images>
 */
import { rmSync } from 'node:fs';
import { adaptorFromObject, parseFilters } from '@berth/common/filters';
import {
  ContentService,
  type InfoRequest,
  type InfoResponse,
  type ReadContentRequest,
  type ReadContentResponse,
} from '@berth/proto/containerd/services/content/v1/content';
import {
  ImagesService,
  type ListImagesRequest,
  type ListImagesResponse,
} from '@berth/proto/containerd/services/images/v1/images';
import * as grpc from '@grpc/grpc-js';
import { precomputed } from './precomputed.js';

const [socket, countArg] = process.argv.slice(2);
if (!socket) throw new Error('usage: grpc-floor.js <socket> <images>');
const answers = precomputed(Number(countArg ?? 500));
const notFound = { code: grpc.status.NOT_FOUND, details: 'not found' };

const server = new grpc.Server();
server.addService(ContentService as unknown as grpc.ServiceDefinition, {
  info(call: grpc.ServerUnaryCall<InfoRequest, InfoResponse>, done: grpc.sendUnaryData<InfoResponse>) {
    const answer = answers.info.get(call.request.digest);
    if (answer) done(null, answer);
    else done(notFound);
  },
  read(call: grpc.ServerWritableStream<ReadContentRequest, ReadContentResponse>) {
    const answer = answers.read.get(call.request.digest);
    if (!answer) {
      call.emit('error', notFound);
      return;
    }
    call.write(answer);
    call.end();
  },
});
server.addService(ImagesService as unknown as grpc.ServiceDefinition, {
  list(
    call: grpc.ServerUnaryCall<ListImagesRequest, ListImagesResponse>,
    done: grpc.sendUnaryData<ListImagesResponse>,
  ) {
    const filter = parseFilters(call.request.filters);
    const images = answers.images.filter((i) => filter.match(adaptorFromObject({ name: i.name, labels: i.labels })));
    done(null, { images });
  },
});
rmSync(socket, { force: true });
server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (e) => {
  if (e) throw e;
  process.stdout.write('listening\n');
});
process.once('SIGTERM', () => server.tryShutdown(() => process.exit(0)));
