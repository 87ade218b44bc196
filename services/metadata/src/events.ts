import { ContainerCreate, ContainerDelete, ContainerUpdate } from '@berth/proto/containerd/events/container';
import { ImageCreate, ImageDelete, ImageUpdate } from '@berth/proto/containerd/events/image';
import { NamespaceCreate, NamespaceDelete, NamespaceUpdate } from '@berth/proto/containerd/events/namespace';
import type { ContainerEvents } from './containers/types.js';
import type { ImageEvents } from './images/types.js';
import type { NamespaceEvents } from './namespaces/types.js';

/*
 * containerd's topics and type URLs (gogo MessageName, no prefix) for the events this service emits.
 * Image events are declared in package containerd.services.images.v1, hence their type URLs.
 */

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

export const imageEvents: ImageEvents = {
  created: (image) => ({
    topic: '/images/create',
    typeUrl: 'containerd.services.images.v1.ImageCreate',
    payload: ImageCreate.encode({ name: image.name, labels: { ...image.labels } }).finish(),
  }),
  updated: (image) => ({
    topic: '/images/update',
    typeUrl: 'containerd.services.images.v1.ImageUpdate',
    payload: ImageUpdate.encode({ name: image.name, labels: { ...image.labels } }).finish(),
  }),
  deleted: (name) => ({
    topic: '/images/delete',
    typeUrl: 'containerd.services.images.v1.ImageDelete',
    payload: ImageDelete.encode({ name }).finish(),
  }),
};

export const containerEvents: ContainerEvents = {
  created: (c) => ({
    topic: '/containers/create',
    typeUrl: 'containerd.events.ContainerCreate',
    payload: ContainerCreate.encode({
      id: c.id,
      image: c.image,
      runtime: {
        name: c.runtime.name,
        options: c.runtime.options
          ? { typeUrl: c.runtime.options.typeUrl, value: Buffer.from(c.runtime.options.value) }
          : undefined,
      },
    }).finish(),
  }),
  updated: (c) => ({
    topic: '/containers/update',
    typeUrl: 'containerd.events.ContainerUpdate',
    payload: ContainerUpdate.encode({
      id: c.id,
      image: c.image,
      labels: { ...c.labels },
      snapshotKey: c.snapshotKey,
    }).finish(),
  }),
  deleted: (id) => ({
    topic: '/containers/delete',
    typeUrl: 'containerd.events.ContainerDelete',
    payload: ContainerDelete.encode({ id }).finish(),
  }),
};
