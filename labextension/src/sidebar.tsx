// The left sidebar: the active notebook's runs, newest first (status, start, duration, task
// counts), and the selected run (runview.tsx). A ReactWidget over SidebarModel; it tells the
// model when it is shown or hidden so that polling stops while nobody looks.

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import {
  elapsedSince,
  formatDuration,
  formatStart,
  summarizeCounts
} from './format';
import { flowIcon } from './icons';
import { RunDetail, RunListItem, StepJSON } from './model';
import { RunView } from './runview';
import { SidebarModel } from './sidebarmodel';
import { noteHeadline } from './tags';
import { TagChips } from './tagsview';

export interface ISidebarActions {
  runFlow: () => void;
  scaleActiveCell: () => void;
  revealStep: (step: StepJSON, run: RunDetail) => void;
  /** Whether the active cell is a step cell (enables the scale button). */
  canScale: () => boolean;
}

export class NbflowSidebar extends ReactWidget {
  constructor(
    readonly model: SidebarModel,
    private readonly _actions: ISidebarActions,
    private readonly _sanitizer: IRenderMime.ISanitizer
  ) {
    super();
    this.id = 'nbflow-sidebar';
    this.addClass('jp-nbflow-sidebar');
    this.title.icon = flowIcon;
    this.title.caption = 'nbflow: run history';
    model.changed.connect(this._onModelChanged, this);
  }

  /** Re-render (e.g. the active cell changed, so the scale button's state may have). */
  refreshView(): void {
    this.update();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.setVisible(this.isVisible);
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.setVisible(false);
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.model.setVisible(this.isVisible);
  }

  protected onBeforeDetach(msg: Message): void {
    this.model.setVisible(false);
    super.onBeforeDetach(msg);
  }

  dispose(): void {
    this.model.changed.disconnect(this._onModelChanged, this);
    super.dispose();
  }

  private _onModelChanged(): void {
    this.update();
  }

  render(): JSX.Element {
    return (
      <SidebarView
        model={this.model}
        actions={this._actions}
        sanitizer={this._sanitizer}
      />
    );
  }
}

function SidebarView(props: {
  model: SidebarModel;
  actions: ISidebarActions;
  sanitizer: IRenderMime.ISanitizer;
}): JSX.Element {
  const { model, actions } = props;
  return (
    <div className="jp-nbflow-panel">
      <div className="jp-nbflow-header">
        <div className="jp-nbflow-title">
          nbflow{model.flow ? ': ' : ''}
          <span className="jp-nbflow-mono">{model.flow ?? ''}</span>
        </div>
        <div className="jp-nbflow-actions">
          <button
            className="jp-mod-styled jp-mod-accept jp-nbflow-button"
            disabled={!model.notebook || model.starting}
            onClick={actions.runFlow}
            title="Run the whole notebook as a new run (nbflow run)"
          >
            {model.starting ? 'Starting…' : 'Run flow'}
          </button>
          <button
            className="jp-mod-styled jp-nbflow-button"
            disabled={!actions.canScale()}
            onClick={actions.scaleActiveCell}
            title="Set the memory, CPUs and GPUs of the active step cell, and run it"
          >
            Scale active cell
          </button>
          <button
            className="jp-mod-styled jp-nbflow-button"
            disabled={!model.notebook}
            onClick={() => model.refresh(false)}
            title="Read the history again"
          >
            Refresh
          </button>
        </div>
      </div>
      {!model.notebook ? (
        <div className="jp-nbflow-empty">
          Open a notebook to see the runs of its flow.
        </div>
      ) : (
        <>
          {model.error ? (
            <div className="jp-nbflow-error">{model.error}</div>
          ) : null}
          <HistoryBar model={model} />
          <RunList model={model} />
          {model.selectedRun ? (
            <div className="jp-nbflow-detail">
              <div className="jp-nbflow-head2">
                run <span className="jp-nbflow-mono">{model.selectedRun}</span>
                <button
                  className="jp-nbflow-link jp-nbflow-close"
                  onClick={() => model.selectRun(null)}
                  title="Close this run"
                >
                  ✕
                </button>
              </div>
              {model.runError ? (
                <div className="jp-nbflow-error">{model.runError}</div>
              ) : null}
              {model.run ? (
                <RunView
                  model={model}
                  run={model.run}
                  sanitizer={props.sanitizer}
                  onRevealStep={actions.revealStep}
                />
              ) : model.runError ? null : (
                <div className="jp-nbflow-muted">loading…</div>
              )}
            </div>
          ) : null}
        </>
      )}
    </div>
  );
}

function RunList({ model }: { model: SidebarModel }): JSX.Element {
  if (!model.loaded) {
    return <div className="jp-nbflow-muted">loading the history…</div>;
  }
  if (model.runs.length === 0) {
    return (
      <div className="jp-nbflow-empty">
        {model.tagFilter !== null
          ? `No runs tagged ${model.tagFilter}.`
          : model.store === null
            ? 'No nbflow store next to this notebook yet: run a step cell or "Run flow".'
            : `No runs of ${model.flow} yet.`}
      </div>
    );
  }
  return (
    <ul className="jp-nbflow-runs" aria-label="Runs, newest first">
      {model.runs.map(r => (
        <RunRow
          key={r.id}
          run={r}
          selected={r.id === model.selectedRun}
          checked={model.isChecked(r.id)}
          onCheck={() => model.toggleChecked(r)}
          onClick={() =>
            model.selectRun(r.id === model.selectedRun ? null : r.id)
          }
        />
      ))}
    </ul>
  );
}

/** Above the history: the tag filter, and comparing the two ticked runs. */
function HistoryBar({ model }: { model: SidebarModel }): JSX.Element | null {
  if (model.store === null && model.tagFilter === null) {
    return null;
  }
  const n = model.checked.length;
  const filter = model.tagFilter;
  // A filter on a tag that no run carries any more stays selectable until it is changed.
  const options =
    filter !== null && !model.tags.some(t => t.name === filter)
      ? [...model.tags, { name: filter, runs: 0 }]
      : model.tags;
  return (
    <div className="jp-nbflow-historybar">
      <label className="jp-nbflow-tagfilter">
        <span className="jp-nbflow-muted">tag</span>
        <select
          className="jp-nbflow-select"
          aria-label="Show only the runs with this tag"
          value={filter ?? ''}
          onChange={e => model.setTagFilter(e.currentTarget.value || null)}
        >
          <option value="">all runs</option>
          {options.map(t => (
            <option key={t.name} value={t.name}>
              {t.name} ({t.runs})
            </option>
          ))}
        </select>
      </label>
      <button
        className="jp-mod-styled jp-nbflow-button jp-nbflow-compare"
        disabled={!model.canCompare}
        onClick={() => model.compare()}
        title={
          model.canCompare
            ? 'Compare the two ticked runs: the older one against the newer one'
            : 'Tick two runs to compare them'
        }
      >
        Compare{n > 0 ? ` (${n})` : ''}
      </button>
    </div>
  );
}

function RunRow(props: {
  run: RunListItem;
  selected: boolean;
  checked: boolean;
  onCheck: () => void;
  onClick: () => void;
}): JSX.Element {
  const { run } = props;
  const c = summarizeCounts(run.counts);
  const duration =
    run.duration ??
    (run.status === 'running' ? elapsedSince(run.started_at) : null);
  const all = Object.entries(run.counts)
    .map(([k, v]) => `${k.replace('_', ' ')}: ${v}`)
    .join(', ');
  const note = noteHeadline(run.note);
  return (
    <li
      className={`jp-nbflow-runrow${props.selected ? ' jp-mod-selected' : ''}`}
      onClick={props.onClick}
      title={`${run.id} (${run.kind})${all ? `\n${all}` : ''}${
        run.note ? `\n\n${run.note}` : ''
      }`}
    >
      <input
        type="checkbox"
        className="jp-nbflow-check"
        checked={props.checked}
        aria-label={`Tick run ${run.id} to compare it`}
        title="Tick two runs, then Compare"
        onClick={e => e.stopPropagation()}
        onChange={props.onCheck}
      />
      <span className={`jp-nbflow-badge jp-nbflow-state-${run.status}`}>
        {run.status}
      </span>
      <span className="jp-nbflow-start">{formatStart(run.started_at)}</span>
      <span className="jp-nbflow-num">{formatDuration(duration)}</span>
      <span className="jp-nbflow-counts">
        <span className="jp-nbflow-count-ok" title="succeeded">
          ✓{c.succeeded}
        </span>
        <span className="jp-nbflow-count-failed" title="failed or timed out">
          ✗{c.failed}
        </span>
        <span className="jp-nbflow-count-cached" title="cached">
          ⟳{c.cached}
        </span>
      </span>
      {run.kind === 'interactive' ? (
        <span className="jp-nbflow-muted" title="a kernel's step cells">
          kernel
        </span>
      ) : run.kind === 'resume' ? (
        <span className="jp-nbflow-muted">resume</span>
      ) : null}
      {(run.tags?.length ?? 0) > 0 || note ? (
        <span className="jp-nbflow-runmeta">
          <TagChips tags={run.tags} />
          {note ? (
            <span className="jp-nbflow-runnote" title={run.note ?? ''}>
              {note}
            </span>
          ) : null}
        </span>
      ) : null}
    </li>
  );
}
