// The sidebar's polling schedule as a pure rule: the next interval from the last one and
// whether the last poll saw a change (reset to the minimum on change, else double up to the cap).

/**
 * The next poll interval in seconds: `min` after a change, else twice `current`, within
 * [`min`, `max`]. `min` is never below 1 second.
 */
export function nextInterval(
  current: number,
  changed: boolean,
  min: number,
  max: number
): number {
  const floor = Math.max(1, min);
  const ceiling = Math.max(floor, max);
  if (changed || !isFinite(current) || current <= 0) {
    return floor;
  }
  return Math.min(ceiling, Math.max(floor, current * 2));
}

/**
 * Milliseconds to wait before an extra poll (a refresh asked for by the user or by an event) so
 * that two polls are never closer than `minSeconds` (at least one second): 0 if the last poll
 * started long enough ago.
 */
export function refreshDelay(
  lastPollMs: number,
  nowMs: number,
  minSeconds: number
): number {
  const gap = Math.max(1, minSeconds) * 1000;
  return Math.max(0, Math.min(gap, lastPollMs + gap - nowMs));
}
