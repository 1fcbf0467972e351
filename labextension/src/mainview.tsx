// The main-area tabs: the diff of two runs and an artifact's lineage. Each shows one reply of
// the API: loads it when opened, shows "loading…" or the error, and reads it again on
// "Refresh". What they show is in diffview.tsx and lineageview.tsx.

import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { NbflowApi } from './api';
import { DiffView } from './diffview';
import { ILineageRequest } from './lineagemodel';
import { LineageView } from './lineageview';
import { DiffReply, LineageReply } from './model';

export abstract class ReplyPanel<T> extends ReactWidget {
  constructor(private readonly _load: () => Promise<T>) {
    super();
    this.addClass('jp-nbflow-mainview');
    this.title.closable = true;
    void this.reload();
  }

  reply: T | null = null;
  error: string | null = null;
  loading = false;

  /** Read the reply again. */
  async reload(): Promise<void> {
    this.loading = true;
    this.update();
    try {
      this.reply = await this._load();
      this.error = null;
    } catch (e) {
      this.error = e instanceof Error ? e.message : String(e);
    } finally {
      this.loading = false;
      if (!this.isDisposed) {
        this.update();
      }
    }
  }

  render(): JSX.Element {
    return (
      <div className="jp-nbflow-main">
        <div className="jp-nbflow-main-head">
          <div className="jp-nbflow-main-title">{this.heading()}</div>
          <button
            className="jp-mod-styled jp-nbflow-button"
            disabled={this.loading}
            onClick={() => void this.reload()}
            title="Read it again"
          >
            Refresh
          </button>
        </div>
        {this.error ? (
          <div className="jp-nbflow-error">{this.error}</div>
        ) : null}
        {this.reply ? (
          this.renderReply(this.reply)
        ) : this.loading ? (
          <div className="jp-nbflow-muted">loading…</div>
        ) : null}
      </div>
    );
  }

  /** The line at the top of the tab. */
  protected abstract heading(): React.ReactNode;
  protected abstract renderReply(reply: T): JSX.Element;
}

/** A tab with the diff of runs `a` (older) and `b` (newer) of a notebook's store. */
export class DiffPanel extends ReplyPanel<DiffReply> {
  constructor(
    api: NbflowApi,
    readonly notebook: string,
    readonly a: string,
    readonly b: string
  ) {
    super(() => api.diff(notebook, a, b));
    this.id = diffPanelId(notebook, a, b);
    this.addClass('jp-nbflow-diffpanel');
    this.title.label = `diff ${shortId(a)} → ${shortId(b)}`;
    this.title.caption = `nbflow: run ${a} (A) against run ${b} (B)`;
  }

  protected heading(): React.ReactNode {
    return 'Compare runs';
  }

  protected renderReply(reply: DiffReply): JSX.Element {
    return <DiffView reply={reply} />;
  }
}

/** The DOM id of the diff tab of two runs (one tab per pair). */
export function diffPanelId(notebook: string, a: string, b: string): string {
  return `nbflow-diff-${encodeURIComponent(notebook)}-${a}-${b}`;
}

/** A run id's last part ("20261127-024712-3c7bf9" -> "3c7bf9"), for a tab's title. */
export function shortId(id: string): string {
  const i = id.lastIndexOf('-');
  return i >= 0 ? id.slice(i + 1) : id;
}

/** A tab with the lineage of one output of one task. */
export class LineagePanel extends ReplyPanel<LineageReply> {
  constructor(
    api: NbflowApi,
    readonly request: ILineageRequest
  ) {
    super(() =>
      api.lineage(request.notebook, request.run, {
        step: request.step,
        name: request.name,
        index: request.index,
        task: request.task
      })
    );
    this.id = lineagePanelId(request);
    this.addClass('jp-nbflow-lineagepanel');
    const label =
      request.index === null
        ? request.name
        : `${request.name}[${request.index}]`;
    this.title.label = `lineage ${label}`;
    this.title.caption = `nbflow: how ${label} of step ${request.step} (run ${request.run}) was made`;
  }

  protected heading(): React.ReactNode {
    const r = this.request;
    return (
      <>
        Lineage of{' '}
        <span className="jp-nbflow-mono">
          {r.index === null ? r.name : `${r.name}[${r.index}]`}
        </span>
      </>
    );
  }

  protected renderReply(reply: LineageReply): JSX.Element {
    return <LineageView reply={reply} />;
  }
}

/** The DOM id of the lineage tab of an output (one tab per output). */
export function lineagePanelId(r: ILineageRequest): string {
  return `nbflow-lineage-${encodeURIComponent(
    [r.notebook, r.run, r.task, r.name].join('\u001f')
  )}`;
}
