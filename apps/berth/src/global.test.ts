import { describe, expect, it } from 'vitest';
import { parseSince } from './commands/events.js';
import { parseGlobal } from './global.js';

describe('berth argument parsing', () => {
  it('takes global flags before the command, then env, then defaults', () => {
    expect(parseGlobal(['-a', '/s.sock', '--namespace=x', 'events', '-n', 'keep'], {})).toEqual({
      global: { address: '/s.sock', namespace: 'x' },
      rest: ['events', '-n', 'keep'],
    });
    expect(parseGlobal(['events'], { CONTAINERD_ADDRESS: '/c.sock', CONTAINERD_NAMESPACE: 'k8s.io' }).global).toEqual({
      address: '/c.sock',
      namespace: 'k8s.io',
    });
    expect(parseGlobal([], {}).global).toEqual({ address: '/run/berth/berth.sock', namespace: 'default' });
    expect(() => parseGlobal(['--address'], {})).toThrow(/needs a value/);
  });

  it('reads --since as an RFC 3339 time or a Go-style duration ago', () => {
    const now = new Date('2024-05-01T12:00:00Z');
    expect(parseSince('2024-05-01T10:00:00Z', now).toISOString()).toBe('2024-05-01T10:00:00.000Z');
    expect(parseSince('1h30m', now).toISOString()).toBe('2024-05-01T10:30:00.000Z');
    expect(parseSince('90s', now).toISOString()).toBe('2024-05-01T11:58:30.000Z');
    expect(() => parseSince('yesterday', now)).toThrow(/neither an RFC 3339 time nor a duration/);
    expect(() => parseSince('10x', now)).toThrow();
  });
});
