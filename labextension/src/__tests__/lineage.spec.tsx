// An artifact's lineage as view rows (labels, distance upstream, cache origin, values, inputs'
// origins), and the lineage and diff views rendering user text as text, never as HTML.

import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';

import { DiffView } from '../diffview';
import {
  artifactHeadline,
  cachedText,
  lineageDepths,
  lineageTasks,
  paramList,
  taskLabel
} from '../lineagemodel';
import { LineageView } from '../lineageview';
import { DiffReply, LineageReply, LineageTaskJSON } from '../model';

const RUN = '20261127-024712-3c7bf9';
const REF = {
  hash: 'abcdef0123456789abcdef',
  size: 2048,
  type: 'builtins.list'
};

function task(
  id: number,
  step: string,
  fields: Partial<LineageTaskJSON> = {}
): LineageTaskJSON {
  return {
    id,
    run: RUN,
    step,
    index: null,
    item: null,
    status: 'succeeded',
    cached_from: null,
    code: `# ${step}`,
    options: {
      name: step,
      foreach: null,
      retry: 0,
      timeout: null,
      catch: false,
      force: false,
      resources: {}
    },
    worker: null,
    started_at: null,
    finished_at: null,
    environment: { python: '3.12.1', packages: {}, sources: {} },
    values: [],
    modules: [],
    files: [],
    inputs: [],
    outputs: {},
    ...fields
  };
}

/** total <- make[0], make[1] <- load; and a task not reachable from the root. */
function reply(): LineageReply {
  return {
    artifact: {
      run: RUN,
      step: 'total',
      name: 'total',
      index: null,
      hash: REF.hash,
      size: 28,
      type: 'builtins.int'
    },
    root: 3,
    params: { n: 4, greeting: 'hello' },
    tasks: [
      task(3, 'total', {
        code: 'total = sum(items)\nprint("<b>total</b>")',
        inputs: [
          {
            name: 'items',
            kind: 'gather',
            artifacts: [REF, REF],
            from: [1, 2]
          }
        ],
        outputs: { total: REF }
      }),
      task(0, 'load', {
        cached_from: { run: '20261126-000000-aaaaaa', task: 7 },
        files: [{ path: 'data.csv', size: 4096, hash: 'ffffffffffffffff00' }],
        environment: {
          python: '3.12.1',
          packages: { pandas: '2.2.0', dask: '2024.1.0' },
          sources: { helpers: 'cafe' }
        }
      }),
      task(1, 'make', {
        index: 0,
        item: '0',
        values: [
          {
            name: 'greeting',
            hash: 'g',
            size: 30,
            type: 'builtins.str',
            repr: "'hello'",
            parameter: false
          },
          {
            name: 'n',
            hash: 'h',
            size: 20,
            type: 'builtins.int',
            repr: '4',
            parameter: true
          }
        ],
        modules: [
          { name: 'np', module: 'numpy' },
          { name: 'os', module: 'os' }
        ],
        inputs: [{ name: 'df', kind: 'artifact', artifacts: [REF], from: [0] }]
      }),
      task(2, 'make', {
        index: 1,
        inputs: [
          { name: 'df', kind: 'artifact', artifacts: [REF], from: [0, 99] }
        ]
      }),
      task(9, 'stray')
    ],
    files: [
      { path: 'data.csv', size: 4096, hash: 'ffffffffffffffff00', task: 0 }
    ]
  };
}

describe('lineage rows', () => {
  it('labels foreach tasks with their index', () => {
    expect(taskLabel({ step: 'make', index: 2 })).toBe('make[2]');
    expect(taskLabel({ step: 'load', index: null })).toBe('load');
  });

  it('measures how far upstream each task is', () => {
    const depths = lineageDepths(reply());
    expect([...depths.entries()].sort((x, y) => x[0] - y[0])).toEqual([
      [0, 2],
      [1, 1],
      [2, 1],
      [3, 0],
      [9, Infinity]
    ]);
  });

  it('lists the producing task first, then by distance', () => {
    const rows = lineageTasks(reply());
    expect(rows.map(r => r.label)).toEqual([
      'total',
      'make[0]',
      'make[1]',
      'load',
      'stray'
    ]);
    expect(rows[0].root).toBe(true);
    expect(rows[0].inputs).toEqual([
      {
        name: 'items',
        kind: 'gather',
        text: 'list of 2',
        from: [
          { id: 1, label: 'make[0]' },
          { id: 2, label: 'make[1]' }
        ]
      }
    ]);
    // An input from a task outside the lineage has no label (nothing to scroll to).
    expect(rows[2].inputs[0].from).toEqual([
      { id: 0, label: 'load' },
      { id: 99, label: null }
    ]);
  });

  it('puts parameters first among the values, and shows modules and packages', () => {
    const make = lineageTasks(reply())[1];
    expect(make.values.map(v => [v.name, v.text, v.parameter])).toEqual([
      ['n', '4', true],
      ['greeting', "'hello'", false]
    ]);
    expect(make.modules).toEqual(['np = numpy', 'os']);
    const load = lineageTasks(reply())[3];
    expect(load.packages).toEqual(['dask==2024.1.0', 'pandas==2.2.0']);
    expect(load.sources).toEqual([{ module: 'helpers', hash: 'cafe' }]);
    expect(load.files).toEqual([
      {
        path: 'data.csv',
        size: '4 KiB',
        hash: 'ffffffffff',
        fullHash: 'ffffffffffffffff00'
      }
    ]);
  });

  it('says where a cache hit came from', () => {
    expect(cachedText(task(1, 'x'))).toBeNull();
    expect(
      cachedText(task(1, 'x', { cached_from: { run: 'R0', task: 7 } }))
    ).toBe('cached from run R0 (task 7)');
    expect(
      cachedText(task(1, 'x', { cached_from: { run: RUN, task: 7 } }))
    ).toBe('cached from task 7 of this run');
    expect(
      cachedText(task(1, 'x', { cached_from: { run: null, task: 7 } }))
    ).toBe('cached from task 7');
  });

  it('heads the view with the artifact, and lists the parameters', () => {
    expect(artifactHeadline(reply())).toBe(
      `total from step total of run ${RUN}`
    );
    expect(paramList(reply().params)).toEqual([
      { name: 'n', value: '4' },
      { name: 'greeting', value: '"hello"' }
    ]);
  });
});

describe('LineageView', () => {
  it('renders code, reprs and parameters as text', () => {
    const out = renderToStaticMarkup(<LineageView reply={reply()} />);
    expect(out).toContain('print(&quot;&lt;b&gt;total&lt;/b&gt;&quot;)');
    expect(out).not.toContain('<b>total</b>');
    expect(out).toContain('cached from run 20261126-000000-aaaaaa (task 7)');
    expect(out).toContain('data-task="1"');
    // The producing task's code is open, the others' folded.
    expect(out).toMatch(/<details class="jp-nbflow-details" open="">/);
  });
});

describe('DiffView', () => {
  it('renders diff lines and summaries as text, coloured by kind', () => {
    const base = {
      id: 'a',
      flow: 'flow',
      status: 'succeeded' as const,
      kind: 'headless' as const,
      started_at: null,
      finished_at: null,
      params: {},
      resumed_from: null,
      notebook_path: null
    };
    const diff: DiffReply = {
      a: { ...base, tags: ['<i>x</i>'], note: '<img src=x onerror=alert(1)>' },
      b: { ...base, id: 'b' },
      params: [{ name: 'n', a: 3, b: 4, status: 'changed' }],
      environment: { python: null, nbflow: null, packages: [] },
      steps: [
        {
          name: 'load',
          status: 'same',
          code: { a: 'x', b: 'x', diff: '' },
          inputs: [],
          packages: [],
          files: [],
          outputs: [],
          tasks: { a: 1, b: 1 }
        },
        {
          name: 'make',
          status: 'changed',
          code: {
            a: 'a',
            b: 'b',
            diff: '--- a\n+++ b\n@@ -1 +1 @@\n-<script>a</script>\n+b\n'
          },
          inputs: [],
          packages: [],
          files: [],
          outputs: [
            {
              name: 'items',
              index: null,
              a: REF,
              b: REF,
              same: false,
              summary: {
                kind: 'sequence',
                same: false,
                text: 'length 3 → 4',
                details: ['item 3 added: <3>']
              },
              note: null
            }
          ],
          tasks: { a: 1, b: 1 }
        }
      ],
      counts: { steps_changed: 1, outputs_changed: 1 }
    };
    const out = renderToStaticMarkup(<DiffView reply={diff} />);
    expect(out).toContain(
      '<div class="jp-nbflow-diffline jp-nbflow-diffline-remove">-&lt;script&gt;a&lt;/script&gt;</div>'
    );
    expect(out).toContain(
      '<div class="jp-nbflow-diffline jp-nbflow-diffline-add">+b</div>'
    );
    expect(out).not.toContain('<script>');
    expect(out).not.toContain('<img');
    expect(out).not.toContain('<i>');
    expect(out).toContain('length 3 → 4');
    expect(out).toContain('item 3 added: &lt;3&gt;');
    expect(out).toContain('1 unchanged step: load');
  });
});
