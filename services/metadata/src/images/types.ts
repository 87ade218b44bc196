import type { RequestContext } from '@berth/common/context';
import type * as oci from '@berth/common/oci';
import type { EncodedEvent } from '../outbox.js';

/** An OCI descriptor as containerd stores an image target: annotations always present (maybe empty). */
export type Descriptor = oci.Descriptor & { readonly annotations: Readonly<Record<string, string>> };

export interface Image {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly target: Descriptor;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** What a client sends to create or update an image; timestamps are always set by the store. */
export type ImageInput = Omit<Image, 'createdAt' | 'updatedAt'>;

/** containerd's image store (`metadata/images.go`), per namespace of the request context. */
export interface ImageStore {
  /** not_found (`image "<name>": not found`) when absent. */
  get(ctx: RequestContext, name: string): Promise<Image>;
  /** Images matching any of `filters` (containerd filter syntax; invalid_argument when malformed), by name. */
  list(ctx: RequestContext, filters: readonly string[]): Promise<Image[]>;
  /**
   * invalid_argument for an empty name, an oversized label or an invalid target; already_exists when the name
   * is taken. Brings the namespace into being. Publishes /images/create.
   */
  create(ctx: RequestContext, image: ImageInput): Promise<Image>;
  /**
   * Applies `paths` (`labels`, `labels.<key>`, `target`, `annotations`, `annotations.<key>`), or replaces the
   * whole record when there are none. not_found when absent. Publishes /images/update.
   */
  update(ctx: RequestContext, image: ImageInput, paths: readonly string[]): Promise<Image>;
  /** not_found when absent. Publishes /images/delete. */
  delete(ctx: RequestContext, name: string): Promise<void>;
}

export interface ImageEvents {
  created(image: Image): EncodedEvent;
  updated(image: Image): EncodedEvent;
  deleted(name: string): EncodedEvent;
}
