// The extension's settings (schema/plugin.json): scaling presets and polling intervals, read
// from ISettingRegistry with defaults and bounds applied, so the rest of the code gets clean values.

import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { ISignal, Signal } from '@lumino/signaling';

export interface Presets {
  memory: string[];
  cpus: number[];
  gpus: number[];
}

export interface Polling {
  /** Seconds between polls while a run is running and changing; at least 1. */
  minInterval: number;
  /** Seconds: the backoff's ceiling, and the interval while nothing runs. */
  maxBackoff: number;
  /** Seconds between status-bar cluster polls. */
  clusterInterval: number;
}

export interface NbflowSettings {
  presets: Presets;
  polling: Polling;
}

export const DEFAULT_SETTINGS: NbflowSettings = {
  presets: {
    memory: ['4G', '16G', '64G'],
    cpus: [1, 4, 16],
    gpus: [0, 1]
  },
  polling: { minInterval: 1, maxBackoff: 30, clusterInterval: 10 }
};

/** Clean settings from the registry's composite value (bad entries fall back to defaults). */
export function readSettings(
  composite: Partial<Record<string, any>> | null | undefined
): NbflowSettings {
  const presets = (composite?.presets ?? {}) as Partial<Record<string, any>>;
  const polling = (composite?.polling ?? {}) as Partial<Record<string, any>>;
  const strings = (v: unknown, d: string[]): string[] =>
    Array.isArray(v)
      ? v.filter(x => typeof x === 'string' && x.trim()).map(x => x.trim())
      : d;
  const numbers = (v: unknown, d: number[]): number[] =>
    Array.isArray(v)
      ? v.filter(x => typeof x === 'number' && isFinite(x) && x >= 0)
      : d;
  const seconds = (v: unknown, d: number): number =>
    typeof v === 'number' && isFinite(v) ? Math.max(1, v) : d;

  const minInterval = seconds(
    polling.minInterval,
    DEFAULT_SETTINGS.polling.minInterval
  );
  const maxBackoff = Math.max(
    minInterval,
    seconds(polling.maxBackoff, DEFAULT_SETTINGS.polling.maxBackoff)
  );
  return {
    presets: {
      memory: strings(presets.memory, DEFAULT_SETTINGS.presets.memory),
      cpus: numbers(presets.cpus, DEFAULT_SETTINGS.presets.cpus),
      gpus: numbers(presets.gpus, DEFAULT_SETTINGS.presets.gpus).map(Math.floor)
    },
    polling: {
      minInterval,
      maxBackoff,
      clusterInterval: seconds(
        polling.clusterInterval,
        DEFAULT_SETTINGS.polling.clusterInterval
      )
    }
  };
}

/** Settings that follow the registry: `current` is always the latest clean value. */
export class SettingsHolder {
  current: NbflowSettings = DEFAULT_SETTINGS;

  /** Emitted with the new value whenever the user changes the settings. */
  get changed(): ISignal<this, NbflowSettings> {
    return this._changed;
  }

  attach(settings: ISettingRegistry.ISettings): void {
    const update = (): void => {
      this.current = readSettings(settings.composite as Record<string, any>);
      this._changed.emit(this.current);
    };
    settings.changed.connect(update);
    update();
  }

  private _changed = new Signal<this, NbflowSettings>(this);
}
