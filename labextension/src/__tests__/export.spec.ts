// The export dialog's pure parts: the default module path and the request sent to the server.

import { defaultOutput, exportRequest, IExportForm } from '../exportform';

const empty: IExportForm = {
  target: '',
  cron: '',
  timezone: '',
  output: '',
  image: '',
  store: '',
  db: '',
  cluster: ''
};

describe('defaultOutput', () => {
  it('puts the module in flows/ next to the notebook', () => {
    expect(defaultOutput('project/analysis.ipynb')).toBe(
      'project/flows/analysis.py'
    );
    expect(defaultOutput('top.ipynb')).toBe('flows/top.py');
  });
});

describe('exportRequest', () => {
  it('sends only the notebook and module when no target is chosen', () => {
    expect(
      exportRequest('a/n.ipynb', {
        ...empty,
        output: 'a/flows/n.py',
        cron: '0 2 * * *'
      })
    ).toEqual({ notebook: 'a/n.ipynb', output: 'a/flows/n.py' });
  });

  it('sends the schedule and leaves out empty fields', () => {
    expect(
      exportRequest('n.ipynb', {
        ...empty,
        target: 'argo',
        cron: ' @daily ',
        image: 'img:1',
        store: 's3://b/p',
        db: 'postgresql://h/d'
      })
    ).toEqual({
      notebook: 'n.ipynb',
      target: 'argo',
      cron: '@daily',
      image: 'img:1',
      store: 's3://b/p',
      db: 'postgresql://h/d'
    });
  });
});
