// Request building of the API client: URLs under nbflow/api/ with the notebook parameter and
// query strings, methods and bodies, and errors carrying the server's message.
// ServerConnection.makeRequest is mocked: no server is needed.

import { ServerConnection } from '@jupyterlab/services';

import { apiUrl, NbflowApi, NbflowApiError } from '../api';

const BASE = 'http://localhost:8888/lab-base/';

function reply(status: number, body: unknown, raw?: string): Response {
  const text = raw ?? JSON.stringify(body);
  return {
    ok: status >= 200 && status < 300,
    status,
    statusText: status === 404 ? 'Not Found' : '',
    text: async () => text
  } as unknown as Response;
}

describe('apiUrl', () => {
  it('joins the base URL, nbflow/api and the parts', () => {
    expect(apiUrl(BASE, ['runs'])).toBe(`${BASE}nbflow/api/runs`);
    expect(apiUrl('http://h/', ['runs', '20261127-024712-3c7bf9'])).toBe(
      'http://h/nbflow/api/runs/20261127-024712-3c7bf9'
    );
  });

  it('encodes the query and leaves out empty values', () => {
    expect(
      apiUrl(BASE, ['runs'], {
        notebook: 'my dir/quick start.ipynb',
        flow: 'quick start',
        status: undefined,
        limit: 50,
        offset: null,
        empty: ''
      })
    ).toBe(
      `${BASE}nbflow/api/runs?notebook=my%20dir%2Fquick%20start.ipynb&flow=quick%20start&limit=50`
    );
  });

  it('encodes each path part', () => {
    expect(apiUrl('http://h/', ['artifacts', 'a/b?c'])).toBe(
      'http://h/nbflow/api/artifacts/a%2Fb%3Fc'
    );
  });
});

describe('NbflowApi', () => {
  let calls: { url: string; init: RequestInit }[];
  let next: Response;
  let api: NbflowApi;

  beforeEach(() => {
    calls = [];
    next = reply(200, {});
    jest
      .spyOn(ServerConnection, 'makeRequest')
      .mockImplementation(async (url: string, init: RequestInit) => {
        calls.push({ url, init });
        return next;
      });
    api = new NbflowApi(ServerConnection.makeSettings({ baseUrl: BASE }));
  });

  afterEach(() => {
    jest.restoreAllMocks();
  });

  it('lists runs of a flow with the notebook parameter', async () => {
    next = reply(200, { runs: [], offset: 0, limit: 50, store: null });
    const out = await api.runs('nb/quickstart.ipynb', {
      flow: 'quickstart',
      limit: 50
    });
    expect(out).toEqual({ runs: [], offset: 0, limit: 50, store: null });
    expect(calls).toHaveLength(1);
    expect(calls[0].url).toBe(
      `${BASE}nbflow/api/runs?notebook=nb%2Fquickstart.ipynb&flow=quickstart&limit=50`
    );
    expect(calls[0].init.method).toBe('GET');
  });

  it('builds the URL of every endpoint', async () => {
    const nb = 'quickstart.ipynb';
    await api.flows(nb);
    await api.run(nb, '20261127-024712-3c7bf9');
    await api.logs(nb, '20261127-024712-3c7bf9', 42, {
      stream: 'stderr',
      tail: 200
    });
    await api.logs(nb, '20261127-024712-3c7bf9', 42);
    await api.artifact(nb, '0123456789abcdef0123456789abcdef');
    await api.cluster(nb);
    expect(calls.map(c => c.url.slice(BASE.length))).toEqual([
      'nbflow/api/flows?notebook=quickstart.ipynb',
      'nbflow/api/runs/20261127-024712-3c7bf9?notebook=quickstart.ipynb',
      'nbflow/api/runs/20261127-024712-3c7bf9/tasks/42/logs?notebook=quickstart.ipynb&stream=stderr&tail=200',
      'nbflow/api/runs/20261127-024712-3c7bf9/tasks/42/logs?notebook=quickstart.ipynb&stream=stdout',
      'nbflow/api/artifacts/0123456789abcdef0123456789abcdef?notebook=quickstart.ipynb',
      'nbflow/api/cluster?notebook=quickstart.ipynb'
    ]);
  });

  it('builds the URLs of tags, diff and lineage', async () => {
    const nb = 'dir/quickstart.ipynb';
    await api.runs(nb, { flow: 'quickstart', tag: 'best run', limit: 50 });
    await api.tags(nb);
    await api.diff(nb, '20261127-024712-3c7bf9', '20261127-030000-aaaaaa');
    await api.lineage(nb, '20261127-024712-3c7bf9', {
      step: 'logreg',
      name: 'model',
      index: 0,
      task: 12
    });
    await api.lineage(nb, '20261127-024712-3c7bf9', {
      step: 'load',
      name: 'X',
      index: null
    });
    expect(calls.map(c => c.url.slice(BASE.length))).toEqual([
      'nbflow/api/runs?notebook=dir%2Fquickstart.ipynb&flow=quickstart&tag=best%20run&limit=50',
      'nbflow/api/tags?notebook=dir%2Fquickstart.ipynb',
      'nbflow/api/diff?notebook=dir%2Fquickstart.ipynb&a=20261127-024712-3c7bf9&b=20261127-030000-aaaaaa',
      'nbflow/api/runs/20261127-024712-3c7bf9/lineage?notebook=dir%2Fquickstart.ipynb&step=logreg&name=model&index=0&task=12',
      'nbflow/api/runs/20261127-024712-3c7bf9/lineage?notebook=dir%2Fquickstart.ipynb&step=load&name=X'
    ]);
    expect(calls.every(c => c.init.method === 'GET')).toBe(true);
  });

  it("posts a run's tags and note", async () => {
    next = reply(200, { tags: ['baseline'], note: 'first try' });
    const out = await api.updateTags('a.ipynb', '20261127-024712-3c7bf9', {
      add: ['baseline'],
      remove: ['old'],
      note: 'first try'
    });
    expect(out).toEqual({ tags: ['baseline'], note: 'first try' });
    expect(calls[0].url).toBe(
      `${BASE}nbflow/api/runs/20261127-024712-3c7bf9/tags?notebook=a.ipynb`
    );
    expect(calls[0].init.method).toBe('POST');
    expect(JSON.parse(calls[0].init.body as string)).toEqual({
      add: ['baseline'],
      remove: ['old'],
      note: 'first try'
    });
  });

  it('asks for the whole log with tail=0', async () => {
    await api.logs('a.ipynb', '20261127-024712-3c7bf9', 1, { tail: 0 });
    expect(calls[0].url).toMatch(/[?&]tail=0$/);
  });

  it('starts a run with a JSON body', async () => {
    next = reply(202, {
      pid: 123,
      notebook: 'a b.ipynb',
      log: '.a b.nbflow-run.log'
    });
    const out = await api.startRun('a b.ipynb');
    expect(out.pid).toBe(123);
    expect(calls[0].url).toBe(`${BASE}nbflow/api/runs`);
    expect(calls[0].init.method).toBe('POST');
    expect(JSON.parse(calls[0].init.body as string)).toEqual({
      notebook: 'a b.ipynb'
    });
  });

  it('posts an export request', async () => {
    next = reply(200, { files: ['flows/a.py', 'flows/nbflow-a.cron'] });
    const out = await api.exportFlow({
      notebook: 'a.ipynb',
      target: 'cron',
      cron: '@daily'
    });
    expect(out.files).toEqual(['flows/a.py', 'flows/nbflow-a.cron']);
    expect(calls[0].url).toBe(`${BASE}nbflow/api/export`);
    expect(calls[0].init.method).toBe('POST');
    expect(JSON.parse(calls[0].init.body as string)).toEqual({
      notebook: 'a.ipynb',
      target: 'cron',
      cron: '@daily'
    });
  });

  it("throws the server's message", async () => {
    next = reply(400, {
      message: "notebook must be a path inside the server's root",
      reason: null
    });
    await expect(api.runs('../x.ipynb')).rejects.toThrow(
      "notebook must be a path inside the server's root"
    );
    next = reply(404, { message: 'no run 20261127-024712-3c7bf9' });
    const err = await api
      .run('a.ipynb', '20261127-024712-3c7bf9')
      .catch(e => e);
    expect(err).toBeInstanceOf(NbflowApiError);
    expect(err.status).toBe(404);
    expect(err.message).toBe('no run 20261127-024712-3c7bf9');
  });

  it('throws a readable error for non-JSON errors and network failures', async () => {
    next = reply(502, null, '<html>Bad gateway</html>');
    await expect(api.cluster('a.ipynb')).rejects.toThrow('HTTP 502');
    (ServerConnection.makeRequest as jest.Mock).mockImplementationOnce(
      async () => {
        throw new TypeError('Failed to fetch');
      }
    );
    const err = await api.cluster('a.ipynb').catch(e => e);
    expect(err.status).toBe(0);
    expect(err.message).toMatch(/did not answer.*Failed to fetch/);
  });
});
