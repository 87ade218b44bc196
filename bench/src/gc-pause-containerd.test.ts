import { describe, expect, it } from 'vitest';
import { goDurationMs, parseCollections } from './gc-pause-containerd.js';

describe('containerd collector log', () => {
  it('reads Go durations', () => {
    expect(goDurationMs('353.228247ms')).toBeCloseTo(353.228247);
    expect(goDurationMs('850.2µs')).toBeCloseTo(0.8502);
    expect(goDurationMs('1m32.0239s')).toBeCloseTo(92_023.9);
    expect(() => goDurationMs('12')).toThrow();
    expect(() => goDurationMs('')).toThrow();
  });

  it('pairs each collection with the cleanups logged before it', () => {
    const log = [
      'time="2026-12-07T09:30:45.770161575Z" level=debug msg="garbage collected" d=8.3ms',
      'time="2026-12-07T09:30:46.1Z" level=debug msg="event published" ns=bench topic=/images/create type=containerd.events.ImageCreate',
      'time="2026-12-07T09:30:46.2Z" level=debug msg="schedule snapshotter cleanup" snapshotter=overlayfs',
      'time="2026-12-07T09:30:46.5Z" level=debug msg="content garbage collected" d=167.7ms',
      'time="2026-12-07T09:30:46.6Z" level=debug msg="snapshot garbage collected" d=295.1ms snapshotter=overlayfs',
      'time="2026-12-07T09:30:46.6Z" level=debug msg="garbage collected" d=172.8ms',
      '',
    ].join('\n');
    expect(parseCollections(log)).toEqual([
      { at: '2026-12-07T09:30:45.770161575Z', metaMs: 8.3, snapshotMs: undefined, contentMs: undefined },
      { at: '2026-12-07T09:30:46.6Z', metaMs: 172.8, snapshotMs: 295.1, contentMs: 167.7 },
    ]);
  });
});
