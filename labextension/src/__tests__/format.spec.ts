// The formatting helpers: durations, byte sizes, start times, task counts, resources.

import {
  elapsedSince,
  formatBytes,
  formatMemoryRequest,
  formatDuration,
  formatResources,
  formatStart,
  summarizeCounts
} from '../format';

describe('formatDuration', () => {
  it.each([
    [null, '—'],
    [undefined, '—'],
    [NaN, '—'],
    [0, '0 ms'],
    [0.35, '350 ms'],
    [1, '1.00 s'],
    [9.999, '9.99 s'],
    [12.34, '12.3 s'],
    [59.99, '59.9 s'],
    [60, '1 min 00 s'],
    [245.7, '4 min 05 s'],
    [3600, '1 h 00 min'],
    [3725, '1 h 02 min'],
    [86400 * 2 + 3 * 3600 + 59, '2 d 03 h'],
    [-5, '0 ms']
  ])('%p -> %s', (seconds, text) => {
    expect(formatDuration(seconds as number | null)).toBe(text);
  });
});

describe('formatBytes', () => {
  it.each([
    [null, '—'],
    [0, '0 B'],
    [512, '512 B'],
    [1023, '1023 B'],
    [1024, '1 KiB'],
    [1536, '1.5 KiB'],
    [10 * 1024 + 512, '10.5 KiB'],
    [2 ** 20, '1 MiB'],
    [16e9, '14.9 GiB'],
    [64 * 2 ** 30, '64 GiB'],
    [123.4 * 2 ** 30, '123 GiB'],
    [3 * 2 ** 40, '3 TiB'],
    [2 ** 60, '1024 PiB']
  ])('%p -> %s', (bytes, text) => {
    expect(formatBytes(bytes as number | null)).toBe(text);
  });
});

describe('formatStart', () => {
  const now = new Date(2026, 10, 27, 15, 0, 0);

  it('shows the time of day for today', () => {
    expect(
      formatStart(new Date(2026, 10, 27, 9, 5, 7).toISOString(), now)
    ).toBe('09:05:07');
  });

  it('shows the date for another day', () => {
    expect(
      formatStart(new Date(2026, 10, 25, 14, 2, 0).toISOString(), now)
    ).toBe('2026-11-25 14:02');
  });

  it('copes with missing and unreadable times', () => {
    expect(formatStart(null, now)).toBe('—');
    expect(formatStart('not a time', now)).toBe('not a time');
  });

  it('reads the server times (ISO 8601 with an offset)', () => {
    const iso = '2026-11-27T02:47:13.000+00:00';
    const t = new Date(iso);
    expect(formatStart(iso, t)).toMatch(/^\d\d:\d\d:\d\d$/);
  });
});

describe('elapsedSince', () => {
  it('counts seconds from the start', () => {
    const start = new Date(2026, 0, 1, 12, 0, 0);
    const now = new Date(2026, 0, 1, 12, 1, 30);
    expect(elapsedSince(start.toISOString(), now)).toBe(90);
    expect(elapsedSince(null, now)).toBeNull();
  });
});

describe('summarizeCounts', () => {
  it('counts timed out tasks as failed', () => {
    expect(
      summarizeCounts({
        succeeded: 5,
        failed: 1,
        timed_out: 2,
        cached: 3,
        pending: 1
      })
    ).toEqual({ succeeded: 5, failed: 3, cached: 3, total: 12 });
  });

  it('treats missing counts as zero', () => {
    expect(summarizeCounts({})).toEqual({
      succeeded: 0,
      failed: 0,
      cached: 0,
      total: 0
    });
    expect(summarizeCounts(null)).toEqual({
      succeeded: 0,
      failed: 0,
      cached: 0,
      total: 0
    });
  });
});

describe('formatMemoryRequest', () => {
  it.each([
    [64e9, '64G'],
    [64 * 2 ** 30, '64GiB'],
    [512 * 2 ** 20, '512MiB'],
    [1.5e9, '1500M'],
    [2 ** 40, '1TiB'],
    [2000000, '2M'],
    [1234567, '1.18 MiB'],
    [100, '100 B']
  ])('%d -> %s', (bytes, text) => {
    expect(formatMemoryRequest(bytes)).toBe(text);
  });
});

describe('formatResources', () => {
  it('writes a stored request back in %%resources style', () => {
    expect(formatResources({ memory: 4e9, cpus: 1, gpus: 0 })).toBe(
      'memory=4G cpus=1 gpus=0'
    );
    expect(formatResources({ memory: 1234567, cpus: 0.5 })).toBe(
      'memory=1.18 MiB cpus=0.5'
    );
    expect(formatResources({})).toBe('none');
    expect(formatResources(null)).toBe('—');
  });
});
