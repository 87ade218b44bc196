/**
 * The deploy artifacts checked without running them: the Kubernetes manifests against the Kubernetes
 * OpenAPI schemas (kubernetes-models' validators) and for the properties a node agent needs; the systemd
 * units with `systemd-analyze verify`; and every berthd role, flag, environment variable and port that
 * docker-compose.yml, deploy/k8s and deploy/systemd name, against the code, so they cannot drift from it.
 */
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { berthdNodeFlags } from '@berth/berthd/node-flags';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Service } from 'kubernetes-models/v1/Service';
import { describe, expect, it } from 'vitest';
import {
  berthdAccepts,
  berthdRoles,
  configEnvNames,
  configKeys,
  filesIn,
  portOf,
  wrapperEnvNames,
  yamlDocuments,
} from './src/artifacts.js';
import { repoRoot } from './src/engine.js';

const run = promisify(execFile);

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML, checked by the validators below
type Obj = any;

const models: Record<string, new (data: Obj) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/DaemonSet': DaemonSet,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
};

async function manifests(): Promise<Array<{ file: string; doc: Obj }>> {
  const out: Array<{ file: string; doc: Obj }> = [];
  for (const file of await filesIn('deploy/k8s', '.yaml')) {
    if (basename(file) === 'kustomization.yaml') continue;
    for (const doc of await yamlDocuments(file)) out.push({ file: basename(file), doc });
  }
  return out;
}

const serviceNamed = (docs: Array<{ doc: Obj }>, name: string): Obj =>
  docs.find(({ doc }) => doc.kind === 'Service' && doc.metadata.name === name)?.doc;
const podSpecs = (docs: Array<{ doc: Obj }>) =>
  docs.filter(({ doc }) => ['Deployment', 'DaemonSet'].includes(doc.kind)).map(({ doc }) => doc);
const berthContainers = (workload: Obj): Obj[] =>
  [...(workload.spec.template.spec.initContainers ?? []), ...workload.spec.template.spec.containers].filter((c: Obj) =>
    String(c.image).startsWith('berth'),
  );

describe('deploy/k8s', () => {
  it('validates every manifest against the Kubernetes OpenAPI schemas', async () => {
    const docs = await manifests();
    expect(docs.length).toBeGreaterThan(0);
    const kinds: string[] = [];
    for (const { file, doc } of docs) {
      const Model = models[`${doc.apiVersion}/${doc.kind}`];
      if (!Model) throw new Error(`${file}: no schema known for ${doc.apiVersion} ${doc.kind}`);
      expect(() => new Model(doc).validate(), `${file} ${doc.kind} ${doc.metadata?.name}`).not.toThrow();
      kinds.push(`${doc.kind}/${doc.metadata.name}`);
    }
    expect(kinds).toEqual(
      expect.arrayContaining([
        'DaemonSet/berth-node',
        'Deployment/berth-metadata',
        'Deployment/berth-content',
        'Deployment/berth-events',
        'Deployment/berth-gc',
        'Service/berth-metadata',
        'Service/berth-content',
        'Service/berth-events',
        'Service/berth-gc',
        'Service/berth-node-collectable',
        'NetworkPolicy/berth-node-collectable',
        'ConfigMap/berth-cluster',
      ]),
    );
    // The validator does catch a broken manifest.
    const broken = structuredClone(docs.find(({ doc }) => doc.kind === 'DaemonSet')?.doc);
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'http';
    expect(() => new DaemonSet(broken).validate()).toThrow(/containerPort must be integer/);
  });

  it('lists every manifest in kustomization.yaml', async () => {
    const [k] = await yamlDocuments(join(repoRoot, 'deploy/k8s/kustomization.yaml'));
    const files = (await filesIn('deploy/k8s', '.yaml'))
      .map((f) => basename(f))
      .filter((f) => f !== 'kustomization.yaml');
    expect([...((k as Obj).resources as string[])].sort()).toEqual(files.sort());
  });

  it('runs the node as a privileged DaemonSet with hostPID, Bidirectional mounts, maxUnavailable 1 and a draining preStop', async () => {
    const ds = (await manifests()).find(({ doc }) => doc.kind === 'DaemonSet')?.doc;
    expect(ds.spec.updateStrategy).toEqual({ type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1 } });
    const pod = ds.spec.template.spec;
    expect(pod.hostPID).toBe(true);
    const node = pod.containers.find((c: Obj) => c.args?.join(' ') === 'serve node');
    expect(node.securityContext.privileged).toBe(true);
    const mounts = Object.fromEntries(node.volumeMounts.map((m: Obj) => [m.mountPath, m]));
    for (const path of ['/var/lib/berth', '/run/berth']) {
      expect(mounts[path].mountPropagation, path).toBe('Bidirectional');
      const volume = pod.volumes.find((v: Obj) => v.name === mounts[path].name);
      expect(volume.hostPath, path).toEqual({ path, type: 'DirectoryOrCreate' });
    }
    const preStop = node.lifecycle.preStop.exec.command as string[];
    // The hook's program ships in the image, and its pid file is the one the wrapper writes.
    await expect(readFile(join(repoRoot, 'deploy/docker', preStop[0] ?? ''), 'utf8')).resolves.toMatch(/kill -TERM/);
    const env = Object.fromEntries(node.env.map((e: Obj) => [e.name, e.value]));
    expect(preStop.slice(1, 3)).toEqual([env.BERTH_PIDFILE, env.BERTH_ADDRESS]);
  });

  it('gives every Berth container readiness and liveness probes and resource requests; Services reach them', async () => {
    const docs = await manifests();
    for (const workload of podSpecs(docs)) {
      for (const c of workload.spec.template.spec.containers) {
        expect(c.readinessProbe.httpGet.path, c.name).toBe('/readyz');
        expect(c.livenessProbe.httpGet.path, c.name).toBe('/healthz');
        expect(c.resources.requests.cpu && c.resources.requests.memory, c.name).toBeTruthy();
        const ports = (c.ports as Obj[]).map((p) => p.name);
        expect(ports, c.name).toContain(c.readinessProbe.httpGet.port);
      }
    }
    for (const { doc: svc } of docs.filter(({ doc }) => doc.kind === 'Service')) {
      const target = podSpecs(docs).find((d) =>
        Object.entries(svc.spec.selector).every(([k, v]) => d.spec.template.metadata.labels[k] === v),
      );
      expect(target, `Service ${svc.metadata.name} selects no pods`).toBeDefined();
      const names = target.spec.template.spec.containers.flatMap((c: Obj) => c.ports.map((p: Obj) => p.name));
      for (const p of svc.spec.ports) expect(names, `${svc.metadata.name} → ${p.targetPort}`).toContain(p.targetPort);
    }
  });
});

describe('docker-compose.yml', () => {
  it('runs the node privileged in the host PID namespace, its root and state at the host paths, shared', async () => {
    const [compose] = await yamlDocuments(join(repoRoot, 'docker-compose.yml'));
    const node = (compose as Obj).services.node;
    expect(node.command).toEqual(['serve', 'node']);
    expect(node).toMatchObject({ privileged: true, pid: 'host' });
    // ctr on the host mounts snapshots and opens FIFOs by the paths the node names: the same inside and out.
    for (const key of ['BERTH_ROOT', 'BERTH_STATE']) {
      const path = node.environment[key];
      expect(node.volumes, key).toContain(`${path}:${path}:rshared`);
    }
    expect(node.environment.BERTH_ADDRESS).toBe(`${node.environment.BERTH_STATE}/berth.sock`);
    expect(node.volumes).toContain('/run/containerd/fifo:/run/containerd/fifo');
    expect(node.volumes).toContain('/sys/fs/cgroup:/sys/fs/cgroup');
  });

  it('starts each service after what it needs is healthy, and every database user after the migrations', async () => {
    const [compose] = await yamlDocuments(join(repoRoot, 'docker-compose.yml'));
    const services = (compose as Obj).services as Record<string, Obj>;
    for (const [name, s] of Object.entries(services)) {
      if (name !== 'migrate') expect(s.healthcheck, name).toBeDefined();
      for (const [dep, cond] of Object.entries((s.depends_on ?? {}) as Record<string, Obj>))
        expect(cond.condition, `${name} → ${dep}`).toBe(
          dep === 'migrate' ? 'service_completed_successfully' : 'service_healthy',
        );
      if (s.environment?.BERTH_POSTGRES && name !== 'migrate' && name !== 'events')
        expect(s.depends_on?.migrate, name).toBeDefined();
      if (name !== 'migrate') expect(s.restart, name).toBe('unless-stopped');
    }
    expect(services['metadata'].deploy.replicas).toBe(2);
    expect(services['content'].deploy.replicas).toBe(2);
    for (const image of ['postgres', 'nats', 's3'])
      expect(services[image].image).toMatch(/^\$\{BERTH_[A-Z0-9]+_IMAGE:-/);
  });
});

describe('deploy/systemd', () => {
  it('passes systemd-analyze verify', async () => {
    const root = await mkdtemp(join(tmpdir(), 'berth-systemd-'));
    try {
      // A root with systemd's own units, the unit files installed, and an executable where berthd goes.
      await mkdir(join(root, 'usr/local/bin'), { recursive: true });
      await mkdir(join(root, 'etc/systemd/system'), { recursive: true });
      await mkdir(join(root, 'etc/berth'), { recursive: true });
      await cp('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true });
      await writeFile(join(root, 'usr/local/bin/berthd'), '#!/bin/sh\n', { mode: 0o755 });
      await cp(join(repoRoot, 'deploy/systemd/berth.env'), join(root, 'etc/berth/berth.env'));
      const units = await filesIn('deploy/systemd', '.service');
      expect(units.map((u) => basename(u))).toEqual([
        'berth-content.service',
        'berth-events.service',
        'berth-gc.service',
        'berth-metadata.service',
        'berth-migrate.service',
        'berth-node.service',
      ]);
      for (const u of units) await cp(u, join(root, 'etc/systemd/system', basename(u)));
      const installed = units.map((u) => join(root, 'etc/systemd/system', basename(u)));
      const { stdout, stderr } = await run('systemd-analyze', ['verify', `--root=${root}`, ...installed]);
      expect(`${stdout}${stderr}`.trim()).toBe('');

      // verify does fail on a broken unit.
      await writeFile(
        installed[0] ?? '',
        (await readFile(installed[0] ?? '', 'utf8')).replace('ExecStart=/usr', 'ExecStart=usr'),
      );
      await expect(run('systemd-analyze', ['verify', `--root=${root}`, installed[0] ?? ''])).rejects.toThrow();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it("gives the node containerd's settings, so a restart of berthd leaves containers running", async () => {
    const unit = await readFile(join(repoRoot, 'deploy/systemd/berth-node.service'), 'utf8');
    for (const line of [
      'Delegate=yes',
      'KillMode=process',
      'OOMScoreAdjust=-999',
      'Restart=always',
      'RestartSec=5',
      'LimitNPROC=infinity',
      'LimitCORE=infinity',
      'TasksMax=infinity',
      'ExecStart=/usr/local/bin/berthd serve node',
      'EnvironmentFile=/etc/berth/berth.env',
    ])
      expect(unit.split('\n'), line).toContain(line);
    expect(unit).not.toMatch(/^LimitNOFILE/m);
  });
});

describe('what the deploy files name exists in berthd', () => {
  const known = async () => new Set([...configEnvNames(), ...(await wrapperEnvNames())]);

  it('docker-compose.yml: roles, variables and ports', async () => {
    const [compose] = await yamlDocuments(join(repoRoot, 'docker-compose.yml'));
    const roles = await berthdRoles();
    const env = await known();
    const services = (compose as Obj).services as Record<string, Obj>;
    const berth = Object.entries(services).filter(([, s]) => String(s.image).includes('BERTH_IMAGE'));
    expect(berth.map(([n]) => n).sort()).toEqual(['content', 'events', 'gc', 'metadata', 'migrate', 'node']);
    const listens: Record<string, number | undefined> = {};
    for (const [name, s] of berth) {
      const command = s.command as string[];
      const role = command[0] === 'serve' ? command[1] : command[0];
      expect(roles, `${name}: role ${role}`).toContain(role);
      await berthdAccepts(command);
      for (const v of Object.keys(s.environment)) expect(env, `${name}: ${v}`).toContain(v);
      if (role !== 'node' && role !== 'migrate')
        listens[name] = portOf(s.environment[`BERTH_${role?.toUpperCase()}_ADDRESS`]);
      if (s.healthcheck)
        expect(portOf(new URL(s.healthcheck.test.at(-1)).host), name).toBe(portOf(s.environment.BERTH_HTTP));
    }
    // Every address a service dials is a service of this file at the port it listens on.
    for (const [name, s] of berth) {
      for (const [k, v] of Object.entries(s.environment as Record<string, string>)) {
        const m = /^BERTH_([A-Z]+)_ADDRESS$/.exec(k);
        if (!m || /^(0\.0\.0\.0:|\/|unix:)/.test(String(v))) continue;
        const [host, port] = String(v).split(':');
        expect(services[host ?? ''], `${name}: ${k}=${v}`).toBeDefined();
        expect(Number(port), `${name}: ${k}=${v}`).toBe(listens[host ?? '']);
      }
    }
    const dockerfile = await readFile(join(repoRoot, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(
      new RegExp(`EXPOSE ${listens['metadata']} ${portOf(services['metadata'].environment.BERTH_HTTP)}`),
    );
  });

  it('deploy/k8s: roles, flags, variables, config keys and ports', async () => {
    const docs = await manifests();
    const roles = await berthdRoles();
    const env = await known();
    const configMap = docs.find(({ doc }) => doc.kind === 'ConfigMap')?.doc;
    const cluster = JSON.parse(configMap.data['cluster.json']);
    for (const key of configKeys(cluster)) {
      const name = `BERTH_${key.toUpperCase().replace(/[.-]/g, '_')}`;
      expect(env, `cluster.json key ${key}`).toContain(name);
    }
    for (const workload of podSpecs(docs)) {
      for (const c of berthContainers(workload)) {
        const args = c.args as string[];
        expect(roles, `${c.name}: ${args.join(' ')}`).toContain(args[0] === 'serve' ? args[1] : args[0]);
        await berthdAccepts(args);
        for (const e of c.env ?? []) expect(env, `${c.name}: ${e.name}`).toContain(e.name);
        const vars = Object.fromEntries((c.env ?? []).map((e: Obj) => [e.name, e.value]));
        const ports = Object.fromEntries((c.ports ?? []).map((p: Obj) => [p.name, p.containerPort]));
        if (c.ports) expect(ports['http'], c.name).toBe(portOf(vars.BERTH_HTTP ?? cluster.http));
        if (args[0] === 'serve' && args[1] !== 'node') {
          expect(ports['grpc'], c.name).toBe(portOf(vars[`BERTH_${args[1]?.toUpperCase()}_ADDRESS`]));
          // and the cluster config sends clients to that Service and port: its ClusterIP, or every replica
          // of a headless one through DNS
          const address = String(cluster[args[1] ?? ''].address);
          const dns = /^dns:\/\/\/([^.:]+)\.berth\.svc\.cluster\.local:(\d+)$/.exec(address);
          expect(dns ? `${dns[1]}:${dns[2]}` : address).toBe(`berth-${args[1]}:${ports['grpc']}`);
          if (dns) expect(serviceNamed(docs, `berth-${args[1]}`).spec.clusterIP, address).toBe('None');
        }
        if (args[0] === 'serve' && args[1] === 'node' && vars.BERTH_LISTEN) {
          // the collectable port, reached by the collector through a headless Service
          expect(ports['collectable'], c.name).toBe(portOf(vars.BERTH_LISTEN));
          const gc = podSpecs(docs).find((w) => w.metadata.name === 'berth-gc');
          const gcEnv = Object.fromEntries(gc.spec.template.spec.containers[0].env.map((e: Obj) => [e.name, e.value]));
          const target = /^dns:\/\/\/([^.:]+)\.berth\.svc\.cluster\.local:(\d+)$/.exec(gcEnv.BERTH_SNAPSHOTS_ADDRESS);
          expect(target?.[2], gcEnv.BERTH_SNAPSHOTS_ADDRESS).toBe(String(ports['collectable']));
          const svc = serviceNamed(docs, target?.[1] ?? '');
          expect(svc.spec.clusterIP).toBe('None');
          expect(svc.spec.selector).toEqual(workload.spec.selector.matchLabels);
        }
      }
    }
  });

  it('deploy/systemd: roles, variables and distinct ports', async () => {
    const roles = await berthdRoles();
    const env = await known();
    const envFile = await readFile(join(repoRoot, 'deploy/systemd/berth.env'), 'utf8');
    for (const m of envFile.matchAll(/^#?(BERTH_[A-Z_]+)=/gm)) expect(env, m[1]).toContain(m[1]);
    const http = new Set<string>();
    for (const unit of await filesIn('deploy/systemd', '.service')) {
      const text = await readFile(unit, 'utf8');
      const exec = /^ExecStart=\/usr\/local\/bin\/berthd (.*)$/m.exec(text)?.[1]?.split(' ') ?? [];
      expect(roles, basename(unit)).toContain(exec[0] === 'serve' ? exec[1] : exec[0]);
      await berthdAccepts(exec);
      for (const m of text.matchAll(/^Environment=(BERTH_[A-Z_]+)=(.*)$/gm)) {
        expect(env, m[1]).toContain(m[1]);
        if (m[1] === 'BERTH_HTTP') http.add(m[2] ?? '');
      }
    }
    expect(http.size).toBe(5);
  });
});

describe("every launch of berthd passes berthd's Node flags", () => {
  it('the bin, the image and systemd wrapper, the npm script, the demo and the A/B bench', async () => {
    const launches: Array<[string, RegExp]> = [
      ['apps/berthd/src/main.ts', /^#!.*$/m],
      ['deploy/docker/berthd', /^exec node .*$/m],
      ['package.json', /"berthd": "node [^"]*"/],
      ['scripts/demo.sh', /^node .*apps\/berthd\/dist\/main\.js.*$/m],
      ['bench/ab/run-ab.sh', /^node .*apps\/berthd\/dist\/main\.js.*$/m],
    ];
    for (const [file, launch] of launches) {
      const line = launch.exec(await readFile(join(repoRoot, file), 'utf8'))?.[0];
      expect(line, `${file} starts berthd`).toBeDefined();
      for (const flag of berthdNodeFlags) expect(line, `${file}: ${line}`).toContain(flag);
    }
  });
});
