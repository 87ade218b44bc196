import { invalidArgument, notImplemented } from '@berth/common/errors';
import { digestProblem } from '@berth/common/oci';
import type { LeaseResource } from './types.js';

/** A lease resource as stored: its kind, the snapshotter for snapshots (else ''), and its id. */
export interface ParsedResource {
  readonly kind: 'content' | 'ingests' | 'snapshots';
  readonly snapshotter: string;
  readonly id: string;
}

/** containerd's `parseLeaseResource`: checks the type and, for content, that the id is a digest. */
export function parseLeaseResource(r: LeaseResource): ParsedResource {
  const keys = r.type.split('/');
  const [kind] = keys;
  switch (kind) {
    case 'content':
    case 'ingests': {
      if (keys.length !== 1) throw invalidArgument(`invalid resource type ${r.type}`);
      if (kind === 'content') {
        const problem = digestProblem(r.id);
        if (problem) throw invalidArgument(`invalid content resource id ${r.id}: ${problem}`);
      }
      return { kind, snapshotter: '', id: r.id };
    }
    case 'snapshots':
      if (keys.length !== 2) throw invalidArgument(`invalid snapshot resource type ${r.type}`);
      return { kind, snapshotter: keys[1] ?? '', id: r.id };
    default:
      throw notImplemented(`resource type ${r.type} not supported yet`);
  }
}

export function formatLeaseResource(p: ParsedResource): LeaseResource {
  return { id: p.id, type: p.kind === 'snapshots' ? `snapshots/${p.snapshotter}` : p.kind };
}
