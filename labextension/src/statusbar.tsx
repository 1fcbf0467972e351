// The status-bar item: the active notebook's live cluster (kind, workers, total memory) with a
// link to its Dask dashboard. Polls GET nbflow/api/cluster every `clusterInterval` seconds,
// standing by while the item or the browser tab is hidden.

import { ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import * as React from 'react';

import { NbflowApi } from './api';
import { refreshDelay } from './backoff';
import { formatBytes } from './format';
import { ClusterReply } from './model';
import { SettingsHolder } from './settings';

export class ClusterStatus extends ReactWidget {
  constructor(
    private readonly _api: NbflowApi,
    private readonly _settings: SettingsHolder
  ) {
    super();
    this.addClass('jp-nbflow-status');
    const seconds = this._settings.current.polling.clusterInterval;
    this._poll = new Poll({
      auto: false,
      factory: () => this._fetch(),
      frequency: { interval: seconds * 1000, backoff: true, max: 300 * 1000 },
      name: 'nbflow:cluster',
      standby: () => !this.isVisible || !this._notebook || 'when-hidden'
    });
    this._settings.changed.connect((_, s) => {
      this._poll.frequency = {
        interval: s.polling.clusterInterval * 1000,
        backoff: true,
        max: Math.max(300, s.polling.clusterInterval) * 1000
      };
    }, this);
  }

  /** Follow the active notebook (null: none). */
  setNotebook(path: string | null): void {
    if (path === this._notebook) {
      return;
    }
    this._notebook = path;
    this._reply = null;
    this._error = null;
    this.update();
    this.refresh();
  }

  /** Poll soon (a run was just started), but never twice within a second. */
  refresh(): void {
    if (this._notebook) {
      const wait = refreshDelay(this._lastPoll, Date.now(), 1);
      void this._poll.schedule({ interval: wait, phase: 'refreshed' });
    }
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.refresh();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.refresh();
  }

  render(): JSX.Element | null {
    if (!this._notebook) {
      return null;
    }
    if (this._error) {
      return <span title={this._error}>nbflow: cluster unknown</span>;
    }
    const c = this._reply?.cluster;
    if (!c) {
      return (
        <span title="No run of this notebook's store is running">
          nbflow: no live cluster
        </span>
      );
    }
    const parts = [c.kind];
    if (c.workers !== undefined) {
      parts.push(`${c.workers} worker${c.workers === 1 ? '' : 's'}`);
    }
    if (c.memory !== undefined) {
      parts.push(formatBytes(c.memory));
    }
    const link = safeUrl(c.dashboard);
    return (
      <span
        title={`scheduler ${c.scheduler ?? 'unknown'} (run ${this._reply?.run})`}
      >
        Dask: {parts.join(' · ')}
        {link ? (
          <>
            {' · '}
            <a href={link} target="_blank" rel="noopener noreferrer">
              dashboard
            </a>
          </>
        ) : null}
      </span>
    );
  }

  private async _fetch(): Promise<void> {
    const notebook = this._notebook;
    if (!notebook) {
      return;
    }
    this._lastPoll = Date.now();
    try {
      const reply = await this._api.cluster(notebook);
      if (notebook === this._notebook) {
        this._reply = reply;
        this._error = null;
        this.update();
      }
    } catch (e) {
      if (notebook === this._notebook) {
        this._error = (e as Error).message;
        this.update();
      }
      throw e;
    }
  }

  private _notebook: string | null = null;
  private _lastPoll = 0;
  private _reply: ClusterReply | null = null;
  private _error: string | null = null;
  private _poll: Poll;
}

/** A dashboard link only when it is an http(s) URL. */
export function safeUrl(url: string | null | undefined): string | null {
  if (!url) {
    return null;
  }
  try {
    const u = new URL(url);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
  } catch {
    return null;
  }
}
