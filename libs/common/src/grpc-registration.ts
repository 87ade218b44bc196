import type * as grpc from '@grpc/grpc-js';

/** One gRPC service implementation ready to be added to a server. */
export interface GrpcRegistration {
  readonly definition: grpc.ServiceDefinition;
  readonly implementation: grpc.UntypedServiceImplementation;
}
