// Settings are read with defaults and bounds: polling never under one second.

import { DEFAULT_SETTINGS, readSettings } from '../settings';
import { flowName } from '../sidebarmodel';

describe('readSettings', () => {
  it('gives the defaults for nothing', () => {
    expect(readSettings(undefined)).toEqual(DEFAULT_SETTINGS);
    expect(readSettings({})).toEqual(DEFAULT_SETTINGS);
  });

  it('keeps valid presets and drops bad entries', () => {
    const s = readSettings({
      presets: {
        memory: ['8G', '', 3, ' 1TB '],
        cpus: [2, -1, 'x'],
        gpus: [0, 2.7]
      }
    });
    expect(s.presets).toEqual({
      memory: ['8G', '1TB'],
      cpus: [2],
      gpus: [0, 2]
    });
  });

  it('keeps polling at one second or slower, and the cap above the minimum', () => {
    const s = readSettings({ polling: { minInterval: 0.2, maxBackoff: 0.5 } });
    expect(s.polling.minInterval).toBe(1);
    expect(s.polling.maxBackoff).toBe(1);
    const t = readSettings({
      polling: { minInterval: 5, maxBackoff: 2, clusterInterval: 20 }
    });
    expect(t.polling).toEqual({
      minInterval: 5,
      maxBackoff: 5,
      clusterInterval: 20
    });
  });
});

describe('flowName', () => {
  it('is the notebook file name without its extension', () => {
    expect(flowName('notebooks/quickstart.ipynb')).toBe('quickstart');
    expect(flowName('flows/quickstart.py')).toBe('quickstart');
    expect(flowName('a.b.ipynb')).toBe('a.b');
    expect(flowName('noext')).toBe('noext');
  });
});
