import { ContentDelete } from '@berth/proto/containerd/events/content';

/** containerd's topic and type URL (gogo MessageName, no prefix) for the one event content emits. */
export function contentDeleted(digest: string): { topic: string; typeUrl: string; payload: Uint8Array } {
  return {
    topic: '/content/delete',
    typeUrl: 'containerd.events.ContentDelete',
    payload: ContentDelete.encode({ digest }).finish(),
  };
}
