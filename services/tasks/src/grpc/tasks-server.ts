import { invalidArgument, notImplemented } from '@berth/common/errors';
import { handlers } from '@berth/common/grpc-handlers';
import type { Logger } from '@berth/common/log';
import type { TasksServer } from '@berth/proto/containerd/services/tasks/v1/tasks';
import type { TaskService } from '../tasks/service.js';
import { metricToPb, processInfoToPb, processToPb } from './convert.js';

const processSpecUrl = 'types.containerd.io/opencontainers/runtime-spec/1/Process';
const resourcesUrl = 'types.containerd.io/opencontainers/runtime-spec/1/LinuxResources';

/** `containerd.services.tasks.v1.Tasks` over the TaskService: validate, call, convert. */
export function createTasksServer(tasks: TaskService, log: Logger): TasksServer {
  const h = handlers(log);
  return {
    create: h.unary(async (req, ctx) => {
      const { pid } = await tasks.create(ctx, {
        containerId: req.containerId,
        rootfs: req.rootfs.map((m) => ({ type: m.type, source: m.source, options: m.options })),
        io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
        checkpoint: req.checkpoint !== undefined && req.checkpoint.digest !== '',
      });
      return { containerId: req.containerId, pid };
    }),
    start: h.unary(async (req, ctx) => tasks.start(ctx, req.containerId, req.execId)),
    delete: h.unary(async (req, ctx) => {
      const exit = await tasks.delete(ctx, req.containerId);
      return { id: '', pid: exit.pid, exitStatus: exit.exitStatus, exitedAt: new Date(exit.exitedAt) };
    }),
    deleteProcess: h.unary(async (req, ctx) => {
      const exit = await tasks.deleteProcess(ctx, req.containerId, req.execId);
      return { id: exit.id, pid: exit.pid, exitStatus: exit.exitStatus, exitedAt: new Date(exit.exitedAt) };
    }),
    get: h.unary(async (req, ctx) => ({ process: processToPb(await tasks.get(ctx, req.containerId, req.execId)) })),
    list: h.unary(async (_req, ctx) => ({ tasks: (await tasks.list(ctx)).map(processToPb) })),
    kill: h.unary(async (req, ctx) => {
      await tasks.kill(ctx, req.containerId, req.execId, req.signal, req.all);
      return {};
    }),
    exec: h.unary(async (req, ctx) => {
      if (!req.spec || req.spec.typeUrl !== processSpecUrl) {
        throw invalidArgument(`exec spec must be an Any of ${processSpecUrl}`);
      }
      await tasks.exec(ctx, {
        containerId: req.containerId,
        execId: req.execId,
        io: { stdin: req.stdin, stdout: req.stdout, stderr: req.stderr, terminal: req.terminal },
        spec: req.spec.value,
      });
      return {};
    }),
    resizePty: h.unary(async (req, ctx) => {
      await tasks.resizePty(ctx, req.containerId, req.execId, req.width, req.height);
      return {};
    }),
    closeIo: h.unary(async (req, ctx) => {
      if (req.stdin) await tasks.closeIO(ctx, req.containerId, req.execId);
      return {};
    }),
    pause: h.unary(async (req, ctx) => {
      await tasks.pause(ctx, req.containerId);
      return {};
    }),
    resume: h.unary(async (req, ctx) => {
      await tasks.resume(ctx, req.containerId);
      return {};
    }),
    listPids: h.unary(async (req, ctx) => ({
      processes: (await tasks.listPids(ctx, req.containerId)).map(processInfoToPb),
    })),
    checkpoint: h.unary(async () => {
      throw notImplemented('checkpoint');
    }),
    update: h.unary(async (req, ctx) => {
      if (!req.resources || req.resources.typeUrl !== resourcesUrl) {
        throw invalidArgument(`resources must be an Any of ${resourcesUrl}`);
      }
      await tasks.update(ctx, req.containerId, req.resources.value);
      return {};
    }),
    metrics: h.unary(async (req, ctx) => ({ metrics: (await tasks.metrics(ctx, req.filters)).map(metricToPb) })),
    wait: h.unary(async (req, ctx) => {
      const exit = await tasks.wait(ctx, req.containerId, req.execId);
      return { exitStatus: exit.exitStatus, exitedAt: new Date(exit.exitedAt) };
    }),
  };
}
