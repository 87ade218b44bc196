import { NamespaceHeader } from '@berth/common/context';
import { channelOptions, dialTarget } from '@berth/common/grpc-server';
import * as grpc from '@grpc/grpc-js';
import type { GlobalOptions } from './command.js';

/** What ts-proto's generated client constructors look like. */
type ClientConstructor<C> = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ClientOptions,
) => C;

/** A client of one service on the node socket; close it when done. */
export function dial<C extends grpc.Client>(ctor: ClientConstructor<C>, global: GlobalOptions): C {
  return new ctor(dialTarget(global.address), grpc.credentials.createInsecure(), channelOptions);
}

/** Call metadata with the namespace header, as ctr sends it on every call. */
export function callMetadata(global: GlobalOptions): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set(NamespaceHeader, global.namespace);
  return md;
}
