// The export dialog's data, apart from any widget (so jest can test it): the targets, the form's
// fields, the default module path and the request sent to POST nbflow/api/export.

import { ExportRequest } from './model';

export const TARGETS = ['', 'cron', 'systemd', 'airflow', 'argo', 'kubernetes'];

/** What the form holds: every field a string, '' meaning "not given". */
export interface IExportForm {
  target: string;
  cron: string;
  timezone: string;
  output: string;
  image: string;
  store: string;
  db: string;
  cluster: string;
}

/** The default output: `flows/NAME.py` next to the notebook. */
export function defaultOutput(notebookPath: string): string {
  const slash = notebookPath.lastIndexOf('/');
  const folder = slash >= 0 ? notebookPath.slice(0, slash + 1) : '';
  const name = notebookPath.slice(slash + 1).replace(/\.ipynb$/, '');
  return `${folder}flows/${name}.py`;
}

/** The request for the server: empty fields left out, the schedule only with a target. */
export function exportRequest(
  notebook: string,
  form: IExportForm
): ExportRequest {
  const body: ExportRequest = { notebook };
  const keep = (value: string): string | undefined => value.trim() || undefined;
  body.output = keep(form.output);
  if (keep(form.target)) {
    body.target = form.target.trim();
    body.cron = keep(form.cron);
    body.timezone = keep(form.timezone);
    for (const key of ['image', 'store', 'db', 'cluster'] as const) {
      body[key] = keep(form[key]);
    }
  }
  for (const key of Object.keys(body) as (keyof ExportRequest)[]) {
    if (body[key] === undefined) {
      delete body[key];
    }
  }
  return body;
}
