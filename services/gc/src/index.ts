import type { EventBus } from '@berth/common/event-bus';
import type { Logger } from '@berth/common/log';
import type { ServiceModule } from '@berth/common/service';
import { GCService } from '@berth/proto/berth/internal/v1/gc';
import type { GcClient, GcStatus } from './client.js';
import { type CollectionStats, createCollector } from './collector.js';
import { createGcServer } from './grpc/gc-server.js';
import { createGcMetrics } from './metrics.js';
import type { Owners } from './owners.js';
import { goDuration, normalizeSchedulerConfig, type SchedulerConfig } from './scheduler/config.js';
import { startScheduler } from './scheduler/scheduler.js';

export type { GcClient, GcStatus } from './client.js';
export { gcClient } from './client.js';
export { type CollectionStats, type Collector, createCollector } from './collector.js';
export { type BackendOptions, inProcessOwners, type LocalOwnerParts } from './in-process-owners.js';
export { type Election, startElection } from './leader/election.js';
export type { CollectionSession, Owners } from './owners.js';
export { type OwnerAddresses, remoteOwners } from './remote-owners.js';
export { defaultSchedulerConfig, type SchedulerConfig } from './scheduler/config.js';

export interface GcDeps {
  readonly log: Logger;
  /** The resource owners the collector reads and drives. */
  readonly owners: Owners;
  readonly scheduler?: Partial<SchedulerConfig>;
  /** Where mutations are seen: every event is one, and a topic ending in /delete or /remove is a deletion. */
  readonly bus?: EventBus;
  /** Whether this replica collects (a leader); always when unset (all-in-one). */
  readonly isLeader?: () => boolean;
  /** Runs when the module closes, after the last collection (closes what the owners and election hold). */
  readonly onClose?: () => Promise<void>;
}

export interface GcModule extends ServiceModule, GcClient {
  /** A write happened (containerd's mutation callback); in-process writers may call it directly. */
  mutated(deletion: boolean): void;
}

/**
 * Builds the garbage collector: containerd's scheduler driving mark-and-sweep over the owners, its
 * `io.containerd.gc.v1 scheduler` plugin entry, its metrics, and `berth.internal.v1.GC`.
 */
export function createGcModule(deps: GcDeps): GcModule {
  const log = deps.log.child({ service: 'gc' });
  const config = normalizeSchedulerConfig(deps.scheduler ?? {});
  const metrics = createGcMetrics();
  const collector = createCollector({ owners: deps.owners, log, hooks: { onPhase: metrics.phase } });
  let collections = 0;
  let failures = 0;
  let last: CollectionStats | undefined;
  const scheduler = startScheduler(
    config,
    async () => {
      try {
        const stats = await collector.collect();
        collections++;
        last = stats;
        metrics.succeeded(stats.pauseMs);
        return stats;
      } catch (e) {
        failures++;
        metrics.failed();
        throw e;
      }
    },
    log,
    () => deps.isLeader?.() ?? true,
  );

  const abort = new AbortController();
  if (deps.bus) {
    const bus = deps.bus;
    void (async () => {
      try {
        for await (const e of bus.subscribe({ from: { kind: 'new' }, signal: abort.signal })) {
          scheduler.mutated(e.topic.endsWith('/delete') || e.topic.endsWith('/remove'));
        }
      } catch (e) {
        if (!abort.signal.aborted) log.warn('gc: event subscription ended; only the idle trigger remains', { err: e });
      }
    })();
  }

  const client: GcClient = {
    collect: () => scheduler.scheduleAndWait(),
    status: async (): Promise<GcStatus> => ({ leader: deps.isLeader?.() ?? true, collections, failures, last }),
  };
  const module: GcModule = {
    ...client,
    name: 'gc',
    grpc: [{ definition: GCService, implementation: createGcServer(client, log) }],
    plugins: [
      {
        type: 'io.containerd.gc.v1',
        id: 'scheduler',
        requires: ['io.containerd.metadata.v1'],
        exports: {
          pause_threshold: String(config.pauseThreshold),
          deletion_threshold: String(config.deletionThreshold),
          mutation_threshold: String(config.mutationThreshold),
          schedule_delay: goDuration(config.scheduleDelayMs),
          startup_delay: goDuration(config.startupDelayMs),
          idle_interval: goDuration(config.idleIntervalMs),
        },
      },
    ],
    mutated: (deletion) => scheduler.mutated(deletion),
    http(_app, registry) {
      if (registry) metrics.register(registry);
    },
    async close() {
      abort.abort();
      scheduler.close();
      await collector.settled();
      await deps.onClose?.();
    },
  };
  return module;
}
