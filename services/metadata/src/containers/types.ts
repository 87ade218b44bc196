import type { RequestContext } from '@berth/common/context';
import type { EncodedEvent } from '../outbox.js';

/** A protobuf `Any`, kept verbatim: Berth never decodes a container's spec, options or extensions. */
export interface AnyValue {
  readonly typeUrl: string;
  readonly value: Uint8Array;
}

export interface Runtime {
  readonly name: string;
  readonly options?: AnyValue | undefined;
}

export interface Container {
  readonly id: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly image: string;
  readonly runtime: Runtime;
  /** Required by create and update; absent only in a request that failed validation. */
  readonly spec?: AnyValue | undefined;
  readonly snapshotter: string;
  readonly snapshotKey: string;
  readonly extensions: Readonly<Record<string, AnyValue>>;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

export type ContainerInput = Omit<Container, 'createdAt' | 'updatedAt'>;

/** containerd's container store (`metadata/containers.go`), per namespace of the request context. */
export interface ContainerStore {
  /** not_found (`container "<id>" in namespace "<ns>": not found`) when absent. */
  get(ctx: RequestContext, id: string): Promise<Container>;
  /** Containers matching any of `filters` (invalid_argument when malformed), by id. */
  list(ctx: RequestContext, filters: readonly string[]): Promise<Container[]>;
  /**
   * invalid_argument when the id is not an identifier or a required field (runtime name, spec, snapshotter
   * with a snapshot key) is missing; already_exists when taken. Brings the namespace into being.
   * Publishes /containers/create.
   */
  create(ctx: RequestContext, container: ContainerInput): Promise<Container>;
  /**
   * Applies `paths` (`labels`, `labels.<key>`, `spec`, `image`, `snapshotkey`, `extensions`,
   * `extensions.<key>`), or, with none, replaces those fields while snapshotter and runtime name must be
   * unchanged. not_found when absent. Publishes /containers/update.
   */
  update(ctx: RequestContext, container: ContainerInput, paths: readonly string[]): Promise<Container>;
  /** not_found when absent. Publishes /containers/delete. */
  delete(ctx: RequestContext, id: string): Promise<void>;
}

export interface ContainerEvents {
  created(c: Container): EncodedEvent;
  updated(c: Container): EncodedEvent;
  deleted(id: string): EncodedEvent;
}
