// "Export notebook as scheduled flow…": a dialog (target, cron, time zone, output path, and for
// container targets image/store/db/cluster) that asks the server to write the flow module and
// its schedule (POST nbflow/api/export), then opens the written files.

import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { NotebookPanel } from '@jupyterlab/notebook';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { NbflowApi } from './api';
import {
  defaultOutput,
  exportRequest,
  IExportForm,
  TARGETS
} from './exportform';

class ExportFormWidget
  extends ReactWidget
  implements Dialog.IBodyWidget<IExportForm>
{
  constructor(private _values: IExportForm) {
    super();
    this.addClass('jp-nbflow-export');
  }

  getValue(): IExportForm {
    return { ...this._values };
  }

  protected render(): JSX.Element {
    const field = (key: keyof IExportForm, label: string, hint: string) => (
      <label key={key}>
        {label}
        <input
          className="jp-mod-styled"
          id={`jp-nbflow-export-${key}`}
          defaultValue={this._values[key]}
          placeholder={hint}
          onChange={e => {
            this._values = { ...this._values, [key]: e.target.value };
          }}
        />
      </label>
    );
    return (
      <div>
        <label>
          target
          <select
            className="jp-mod-styled"
            id="jp-nbflow-export-target"
            defaultValue={this._values.target}
            onChange={e => {
              this._values = { ...this._values, target: e.target.value };
            }}
          >
            {TARGETS.map(t => (
              <option key={t} value={t}>
                {t || 'module only'}
              </option>
            ))}
          </select>
        </label>
        {field('cron', 'cron', '0 2 * * *  or  @daily')}
        {field('timezone', 'time zone', 'Europe/Paris')}
        {field('output', 'module', 'flows/NAME.py')}
        {field('image', 'image (argo, kubernetes)', 'ghcr.io/you/project:1')}
        {field('store', 'store', 's3://bucket/nbflow')}
        {field('db', 'database', 'postgresql+psycopg://user@host/nbflow')}
        {field('cluster', 'Dask cluster', 'tcp://scheduler:8786')}
      </div>
    );
  }
}

/** The whole command: dialog, request, then open what was written. */
export async function exportNotebook(
  panel: NotebookPanel,
  api: NbflowApi,
  open: (path: string) => Promise<unknown>
): Promise<string[] | null> {
  const path = panel.context.path;
  const form = new ExportFormWidget({
    target: 'cron',
    cron: '0 2 * * *',
    timezone: '',
    output: defaultOutput(path),
    image: '',
    store: '',
    db: '',
    cluster: ''
  });
  const result = await showDialog({
    title: 'Export notebook as scheduled flow',
    body: form,
    buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Export' })]
  });
  if (!result.button.accept || result.value === null) {
    return null;
  }
  if (panel.context.model.dirty) {
    await panel.context.save();
  }
  try {
    const reply = await api.exportFlow(exportRequest(path, result.value));
    for (const file of reply.files) {
      await open(file);
    }
    return reply.files;
  } catch (e) {
    await showErrorMessage('nbflow: export', (e as Error).message);
    return null;
  }
}
