// How the wire model's values read to a person: durations, byte sizes, start times, task counts.
// Pure functions, no DOM.

import { ResourcesJSON, TaskCounts } from './model';

/** Seconds as a short duration: "350 ms", "12.3 s", "4 min 05 s", "1 h 02 min", "2 d 03 h". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '—';
  }
  const s = Math.max(0, seconds);
  if (s < 1) {
    return `${Math.round(s * 1000)} ms`;
  }
  if (s < 10) {
    return `${(Math.floor(s * 100) / 100).toFixed(2)} s`;
  }
  if (s < 60) {
    return `${(Math.floor(s * 10) / 10).toFixed(1)} s`;
  }
  const whole = Math.floor(s);
  if (whole < 3600) {
    return `${Math.floor(whole / 60)} min ${pad(whole % 60)} s`;
  }
  if (whole < 86400) {
    return `${Math.floor(whole / 3600)} h ${pad(Math.floor(whole / 60) % 60)} min`;
  }
  return `${Math.floor(whole / 86400)} d ${pad(Math.floor(whole / 3600) % 24)} h`;
}

const BINARY_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** Bytes in binary units, as Dask shows memory: "512 B", "1.5 KiB", "15.6 GiB". */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !isFinite(bytes)) {
    return '—';
  }
  let value = Math.max(0, bytes);
  let unit = 0;
  while (value >= 1024 && unit < BINARY_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  if (unit === 0) {
    return `${Math.round(value)} B`;
  }
  const digits = value < 10 ? 2 : value < 100 ? 1 : 0;
  return `${trimZeros(value.toFixed(digits))} ${BINARY_UNITS[unit]}`;
}

/**
 * A run's or task's start time, in local time: "14:02:11" when it is on the same day as `now`,
 * else "2026-11-25 14:02".
 */
export function formatStart(
  iso: string | null | undefined,
  now: Date = new Date()
): string {
  if (!iso) {
    return '—';
  }
  const t = new Date(iso);
  if (isNaN(t.getTime())) {
    return iso;
  }
  const time = `${pad(t.getHours())}:${pad(t.getMinutes())}`;
  if (
    t.getFullYear() === now.getFullYear() &&
    t.getMonth() === now.getMonth() &&
    t.getDate() === now.getDate()
  ) {
    return `${time}:${pad(t.getSeconds())}`;
  }
  return `${t.getFullYear()}-${pad(t.getMonth() + 1)}-${pad(t.getDate())} ${time}`;
}

/** Seconds from `startIso` to `now` (a running run's elapsed time), null if unknown. */
export function elapsedSince(
  startIso: string | null | undefined,
  now: Date = new Date()
): number | null {
  if (!startIso) {
    return null;
  }
  const t = new Date(startIso).getTime();
  return isNaN(t) ? null : Math.max(0, (now.getTime() - t) / 1000);
}

/** The three numbers of a history row: succeeded, failed (timed out included), cached. */
export interface CountSummary {
  succeeded: number;
  failed: number;
  cached: number;
  /** All tasks, whatever their state. */
  total: number;
}

export function summarizeCounts(
  counts: TaskCounts | null | undefined
): CountSummary {
  const c = counts ?? {};
  const total = Object.values(c).reduce((a, b) => a + (b ?? 0), 0);
  return {
    succeeded: c.succeeded ?? 0,
    failed: (c.failed ?? 0) + (c.timed_out ?? 0),
    cached: c.cached ?? 0,
    total
  };
}

const REQUEST_UNITS: [string, number][] = [
  ['TiB', 2 ** 40],
  ['GiB', 2 ** 30],
  ['MiB', 2 ** 20],
  ['T', 1e12],
  ['G', 1e9],
  ['M', 1e6]
];

/**
 * Bytes of a memory request in the units it was most likely written in (`%%resources
 * memory=64G` is stored as 64·10⁹ bytes and shown as "64G"); other amounts as formatBytes.
 */
export function formatMemoryRequest(bytes: number): string {
  for (const [unit, size] of REQUEST_UNITS) {
    if (bytes >= size && bytes % size === 0) {
      return `${bytes / size}${unit}`;
    }
  }
  return formatBytes(bytes);
}

/** A stored resource request as `%%resources` would write it: "memory=16G cpus=4 gpus=1". */
export function formatResources(res: ResourcesJSON | null | undefined): string {
  if (!res) {
    return '—';
  }
  const parts: string[] = [];
  if (res.memory !== undefined && res.memory !== null) {
    parts.push(`memory=${formatMemoryRequest(res.memory)}`);
  }
  if (res.cpus !== undefined && res.cpus !== null) {
    parts.push(`cpus=${res.cpus}`);
  }
  if (res.gpus !== undefined && res.gpus !== null) {
    parts.push(`gpus=${res.gpus}`);
  }
  return parts.length ? parts.join(' ') : 'none';
}

function pad(n: number): string {
  return n < 10 ? `0${n}` : `${n}`;
}

function trimZeros(fixed: string): string {
  return fixed.includes('.') ? fixed.replace(/\.?0+$/, '') : fixed;
}

/** The first `n` hex digits of a content hash, for display (the full hash goes in a title). */
export function shortHash(hash: string | null | undefined, n = 10): string {
  if (!hash) {
    return '—';
  }
  return hash.length > n ? hash.slice(0, n) : hash;
}

/** A JSON value as one line of text (parameters, reprs): strings quoted, like JSON. */
export function formatValue(value: unknown): string {
  if (value === undefined) {
    return '—';
  }
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text;
  } catch {
    return String(value);
  }
}
