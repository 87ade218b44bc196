import { NamespaceCreate, NamespaceDelete, NamespaceUpdate } from '@berth/proto/containerd/events/namespace';
import type { NamespaceEvents } from './namespaces/types.js';

/** containerd's topics and type URLs (gogo MessageName, no prefix) for the events this service emits. */
export const namespaceEvents: NamespaceEvents = {
  created: (ns) => ({
    topic: '/namespaces/create',
    typeUrl: 'containerd.events.NamespaceCreate',
    payload: NamespaceCreate.encode({ name: ns.name, labels: { ...ns.labels } }).finish(),
  }),
  updated: (ns) => ({
    topic: '/namespaces/update',
    typeUrl: 'containerd.events.NamespaceUpdate',
    payload: NamespaceUpdate.encode({ name: ns.name, labels: { ...ns.labels } }).finish(),
  }),
  deleted: (name) => ({
    topic: '/namespaces/delete',
    typeUrl: 'containerd.events.NamespaceDelete',
    payload: NamespaceDelete.encode({ name }).finish(),
  }),
};
