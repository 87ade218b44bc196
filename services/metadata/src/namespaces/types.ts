import type { RequestContext } from '@berth/common/context';
import type { EncodedEvent } from '../outbox.js';

export interface Namespace {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
}

/** containerd's namespace store semantics. */
export interface NamespaceStore {
  /** Labels of `name`; an unknown namespace answers with no labels, never not_found (ctr relies on it). */
  get(ctx: RequestContext, name: string): Promise<Namespace>;
  list(ctx: RequestContext): Promise<Namespace[]>;
  /** invalid_argument for a bad name or label; already_exists when present. Publishes /namespaces/create. */
  create(ctx: RequestContext, ns: Namespace): Promise<Namespace>;
  /**
   * Updates labels: with `paths` only the `labels.<key>` named (an empty value removes the label), without
   * them all labels are replaced. Creates the namespace if it did not exist, as containerd does. Publishes
   * /namespaces/update.
   */
  update(ctx: RequestContext, ns: Namespace, paths: readonly string[]): Promise<Namespace>;
  /**
   * failed_precondition while it holds images or containers, or another service reports resources in it;
   * its leases go with it. not_found when absent. Publishes /namespaces/delete.
   */
  delete(ctx: RequestContext, name: string): Promise<void>;
}

/** The encoded events this store writes to the outbox. */
export interface NamespaceEvents {
  created(ns: Namespace): EncodedEvent;
  updated(ns: Namespace): EncodedEvent;
  deleted(name: string): EncodedEvent;
}
