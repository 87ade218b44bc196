import { ContentService } from '@berth/proto/containerd/services/content/v1/content';
import { describe, expect, it } from 'vitest';
import { berthServiceNames, ownedServices, serviceNameOf } from './routes.js';

describe('routes', () => {
  it("names a service definition by containerd's gRPC service name", () => {
    expect(serviceNameOf(ContentService)).toBe('containerd.services.content.v1.Content');
  });

  it('gives every gRPC service exactly one owner', () => {
    const owners = new Map<string, string>();
    for (const name of berthServiceNames) {
      for (const def of ownedServices[name]) {
        const service = serviceNameOf(def);
        expect(owners.get(service), service).toBeUndefined();
        owners.set(service, name);
      }
    }
    expect(owners.get('containerd.services.namespaces.v1.Namespaces')).toBe('metadata');
    expect(owners.get('containerd.services.tasks.v1.Tasks')).toBe('tasks');
    expect(owners.size).toBe(11);
  });
});
