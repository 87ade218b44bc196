import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BerthdProcess, startBerthd } from './src/berthd.js';
import { ctr, tableRows } from './src/ctr.js';

describe('ctr against berthd (all-in-one, embedded defaults)', () => {
  let d: BerthdProcess;
  beforeAll(async () => {
    d = await startBerthd();
  });
  afterAll(async () => {
    await d.stop();
  });

  it('ctr version prints the server version and a stable UUID', async () => {
    const r = await ctr(d.socket, ['version']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Server:\n\s+Version:\s+1\.6\.20\+berth/);
    const uuid = /UUID: ([0-9a-f-]{36})/.exec(r.stdout)?.[1];
    expect(uuid).toBeDefined();
    const again = await ctr(d.socket, ['version']);
    expect(again.stdout).toContain(`UUID: ${uuid}`);
  });

  it('ctr plugins ls lists the services as containerd plugins', async () => {
    const r = await ctr(d.socket, ['plugins', 'ls']);
    expect(r.code, r.stderr).toBe(0);
    const rows = tableRows(r.stdout);
    expect(rows).toContainEqual(['io.containerd.grpc.v1', 'namespaces', '-', 'ok']);
    expect(rows).toContainEqual(['io.containerd.grpc.v1', 'version', '-', 'ok']);
    expect(rows).toContainEqual(['io.containerd.grpc.v1', 'introspection', '-', 'ok']);
    const filtered = await ctr(d.socket, ['plugins', 'ls', 'id==namespaces']);
    expect(tableRows(filtered.stdout)).toEqual([['io.containerd.grpc.v1', 'namespaces', '-', 'ok']]);
  });

  it('ctr namespaces create, ls, label, rm behave as on containerd', async () => {
    expect((await ctr(d.socket, ['namespaces', 'create', 'ns1', 'a=b'])).code).toBe(0);
    let ls = await ctr(d.socket, ['namespaces', 'ls']);
    expect(ls.code, ls.stderr).toBe(0);
    expect(tableRows(ls.stdout)).toContainEqual(['ns1', 'a=b']);

    expect((await ctr(d.socket, ['namespaces', 'label', 'ns1', 'a=c'])).code).toBe(0);
    ls = await ctr(d.socket, ['namespaces', 'ls']);
    expect(tableRows(ls.stdout)).toContainEqual(['ns1', 'a=c']);

    const quiet = await ctr(d.socket, ['namespaces', 'ls', '-q']);
    expect(quiet.stdout.split('\n')).toContain('ns1');

    const rm = await ctr(d.socket, ['namespaces', 'rm', 'ns1']);
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout.trim()).toBe('ns1');
    ls = await ctr(d.socket, ['namespaces', 'ls', '-q']);
    expect(ls.stdout.split('\n')).not.toContain('ns1');
  });

  it('refuses bad input with containerd error messages and changes nothing', async () => {
    const bad = await ctr(d.socket, ['namespaces', 'create', 'bad name']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain(
      'ctr: identifier "bad name" must match ^[A-Za-z0-9]+(?:[._-](?:[A-Za-z0-9]+))*$: invalid argument',
    );

    const long = await ctr(d.socket, ['namespaces', 'create', 'a'.repeat(77)]);
    expect(long.stderr).toContain('greater than maximum length (76 characters): invalid argument');

    expect((await ctr(d.socket, ['namespaces', 'create', 'dup'])).code).toBe(0);
    const dup = await ctr(d.socket, ['namespaces', 'create', 'dup']);
    expect(dup.code).not.toBe(0);
    expect(dup.stderr).toContain('ctr: namespace "dup": already exists');

    const ls = await ctr(d.socket, ['namespaces', 'ls', '-q']);
    expect(ls.stdout.trim().split('\n').sort()).toEqual(['dup']);

    // ctr ignores not-found on rm, as with containerd; the name is still printed.
    const gone = await ctr(d.socket, ['namespaces', 'rm', 'nope']);
    expect(gone.code).toBe(0);

    const badHeader = await ctr(d.socket, ['--namespace', 'no good', 'namespaces', 'ls']);
    expect(badHeader.code).toBe(0); // containerd's namespace service does not require the header either
  });

  it('shuts down cleanly on SIGTERM and removes its socket', async () => {
    const other = await startBerthd();
    const { existsSync } = await import('node:fs');
    expect(existsSync(other.socket)).toBe(true);
    const socket = other.socket;
    other.child.kill('SIGTERM');
    const code = await new Promise((r) => other.child.once('exit', r));
    expect(code).toBe(0);
    expect(existsSync(socket)).toBe(false);
    await other.stop();
  });
});
