// The sidebar's polling schedule: 1 s, doubling to 30 s, reset on change, never under 1 s.

import { nextInterval, refreshDelay } from '../backoff';

describe('nextInterval', () => {
  it('doubles while nothing changes, up to the cap', () => {
    let t = nextInterval(0, false, 1, 30);
    const seen = [t];
    for (let i = 0; i < 7; i++) {
      t = nextInterval(t, false, 1, 30);
      seen.push(t);
    }
    expect(seen).toEqual([1, 2, 4, 8, 16, 30, 30, 30]);
  });

  it('resets to the minimum on change', () => {
    expect(nextInterval(16, true, 1, 30)).toBe(1);
    expect(nextInterval(16, true, 3, 30)).toBe(3);
  });

  it('never goes below one second, nor the cap below the minimum', () => {
    expect(nextInterval(0.1, true, 0.2, 30)).toBe(1);
    expect(nextInterval(0.4, false, 0, 30)).toBe(1);
    expect(nextInterval(8, false, 5, 2)).toBe(5);
  });
});

describe('refreshDelay', () => {
  it('polls at once when the last poll is old enough', () => {
    expect(refreshDelay(0, 10_000, 1)).toBe(0);
    expect(refreshDelay(9_000, 10_000, 1)).toBe(0);
  });

  it('waits out the rest of the minimum interval otherwise', () => {
    expect(refreshDelay(9_700, 10_000, 1)).toBe(700);
    expect(refreshDelay(10_000, 10_000, 2)).toBe(2000);
    expect(refreshDelay(10_000, 10_000, 0.1)).toBe(1000);
  });

  it('never waits longer than the interval (a clock that went back)', () => {
    expect(refreshDelay(50_000, 10_000, 1)).toBe(1000);
  });
});
