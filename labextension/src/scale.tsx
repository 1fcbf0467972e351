// "Scale this cell": a dialog for a step cell's memory, CPUs and GPUs (presets from the settings,
// current values from its `%%resources` line, the cluster's largest worker for reference), then
// the `%%resources` line is rewritten (resources.ts) and the cell run again.

import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { ICodeCellModel } from '@jupyterlab/cells';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { NbflowApi } from './api';
import { capacityNote } from './capacity';
import { formatBytes } from './format';
import { ClusterReply } from './model';
import {
  parseMemory,
  parseResources,
  readResourceForm,
  ResourceForm,
  setResources,
  stepName
} from './resources';
import { Presets } from './settings';

/** What the dialog knows about the cluster: a reply, or why there is none. */
type ClusterInfo = { reply: ClusterReply } | { error: string };

/** The dialog's body: a small form whose values `getValue` returns. */
class ScaleForm
  extends ReactWidget
  implements Dialog.IBodyWidget<ResourceForm>
{
  constructor(
    private readonly _step: string,
    private _values: ResourceForm,
    private readonly _presets: Presets,
    private readonly _cluster: ClusterInfo
  ) {
    super();
    this.addClass('jp-nbflow-scale');
  }

  getValue(): ResourceForm {
    return { ...this._values };
  }

  render(): JSX.Element {
    const set = (key: keyof ResourceForm, value: string): void => {
      this._values = { ...this._values, [key]: value };
      this.update();
    };
    const note = capacityNote(
      'reply' in this._cluster ? this._cluster.reply.cluster : null,
      parseMemory(this._values.memory)
    );
    return (
      <div>
        <p>
          Resources for each task of step{' '}
          <code className="jp-nbflow-mono">{this._step}</code>. Leave a field
          empty to drop it.
        </p>
        <ClusterLine info={this._cluster} />
        <Field
          label="memory"
          value={this._values.memory}
          placeholder="e.g. 16G"
          presets={this._presets.memory}
          onChange={v => set('memory', v)}
          hint="Dask units: 64G = 64·10⁹ bytes, 64GiB = 64·2³⁰"
        />
        {note ? (
          <div
            className={
              note.level === 'warning' ? 'jp-nbflow-warning' : 'jp-nbflow-note'
            }
          >
            {note.text}
          </div>
        ) : null}
        <Field
          label="cpus"
          value={this._values.cpus}
          placeholder="e.g. 4"
          presets={this._presets.cpus.map(String)}
          onChange={v => set('cpus', v)}
          inputMode="decimal"
        />
        <Field
          label="gpus"
          value={this._values.gpus}
          placeholder="e.g. 1"
          presets={this._presets.gpus.map(String)}
          onChange={v => set('gpus', v)}
          inputMode="numeric"
        />
      </div>
    );
  }
}

function Field(props: {
  label: string;
  value: string;
  placeholder: string;
  presets: string[];
  onChange: (value: string) => void;
  hint?: string;
  inputMode?: 'decimal' | 'numeric';
}): JSX.Element {
  const id = `jp-nbflow-scale-${props.label}`;
  return (
    <div className="jp-nbflow-field">
      <label htmlFor={id}>{props.label}</label>
      <input
        id={id}
        className="jp-mod-styled"
        value={props.value}
        placeholder={props.placeholder}
        inputMode={props.inputMode}
        onChange={e => props.onChange(e.target.value)}
      />
      <span className="jp-nbflow-presets">
        {props.presets.map(p => (
          <button
            key={p}
            type="button"
            className={`jp-nbflow-preset${p === props.value ? ' jp-mod-selected' : ''}`}
            onClick={() => props.onChange(p)}
          >
            {p}
          </button>
        ))}
      </span>
      {props.hint ? <div className="jp-nbflow-muted">{props.hint}</div> : null}
    </div>
  );
}

function ClusterLine({ info }: { info: ClusterInfo }): JSX.Element {
  if ('error' in info) {
    return <div className="jp-nbflow-muted">Cluster unknown: {info.error}</div>;
  }
  const c = info.reply.cluster;
  if (!c) {
    return (
      <div className="jp-nbflow-muted">
        No live run: the cluster is not known
        {info.reply.address ? ` (configured: ${info.reply.address})` : ''}.
      </div>
    );
  }
  const w = c.largest_worker;
  return (
    <div className="jp-nbflow-muted">
      Cluster: {c.kind}
      {c.workers !== undefined ? `, ${c.workers} workers` : ''}
      {w
        ? `; largest worker: memory ${formatBytes(w.memory)}, cpus ${w.cpus}, gpus ${w.gpus}`
        : ''}
    </div>
  );
}

/** The form's initial values from a cell's `%%resources` line. */
export function formFromSource(source: string): ResourceForm {
  const r = parseResources(source);
  return {
    memory: r.memory ?? '',
    cpus: r.cpus !== undefined ? String(r.cpus) : '',
    gpus: r.gpus !== undefined ? String(r.gpus) : ''
  };
}

/**
 * Scale the panel's active cell: ask for the resources, rewrite its `%%resources` line and run
 * it. Returns false when nothing was done (not a step cell, cancelled).
 */
export async function scaleActiveCell(
  panel: NotebookPanel,
  api: NbflowApi,
  presets: Presets
): Promise<boolean> {
  const notebook = panel.content;
  const cell = notebook.activeCell;
  if (!cell || cell.model.type !== 'code') {
    await showErrorMessage(
      'Scale this cell',
      'nbflow: not a step cell (select a `%%step` cell).'
    );
    return false;
  }
  const model = cell.model as ICodeCellModel;
  const step = stepName(model.sharedModel.getSource());
  if (!step) {
    await showErrorMessage(
      'Scale this cell',
      'nbflow: not a step cell: the cell has no `%%step NAME` header line.'
    );
    return false;
  }

  let cluster: ClusterInfo;
  try {
    cluster = { reply: await api.cluster(panel.context.localPath) };
  } catch (e) {
    cluster = { error: (e as Error).message };
  }

  let values = formFromSource(model.sharedModel.getSource());
  for (;;) {
    const result = await showDialog<ResourceForm>({
      title: 'Scale this cell',
      body: new ScaleForm(step, values, presets, cluster),
      buttons: [
        Dialog.cancelButton(),
        Dialog.okButton({ label: 'Set and run' })
      ],
      focusNodeSelector: 'input'
    });
    if (!result.button.accept || !result.value) {
      return false;
    }
    values = result.value;
    const { update, errors } = readResourceForm(values);
    if (errors.length) {
      await showErrorMessage('Scale this cell', errors.join('\n'));
      continue;
    }
    if (model.isDisposed) {
      return false; // the cell was deleted while the dialog was open
    }
    const before = model.sharedModel.getSource();
    const after = setResources(before, update);
    if (after !== before) {
      model.sharedModel.setSource(after);
    }
    const index = notebook.widgets.findIndex(w => w.model === model);
    if (index < 0) {
      return false;
    }
    notebook.activeCellIndex = index;
    notebook.deselectAll();
    await NotebookActions.run(notebook, panel.sessionContext);
    return true;
  }
}
