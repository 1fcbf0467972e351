// The diff view's rows: unified-diff lines, run order, folding unchanged steps, two-sided rows.

import {
  classifyDiffLine,
  diffHeadline,
  diffLines,
  fileRows,
  formatStepOptions,
  inputRows,
  optionRows,
  orderRuns,
  outputLabel,
  outputRows,
  packageRows,
  paramRows,
  sameStepsLine,
  stepItems
} from '../diffmodel';
import { DiffReply, RunSummary, StepDiffJSON } from '../model';

function run(id: string, started_at: string | null): RunSummary {
  return {
    id,
    flow: 'flow',
    status: 'succeeded',
    kind: 'headless',
    started_at,
    finished_at: null,
    params: {},
    resumed_from: null,
    notebook_path: null,
    tags: [],
    note: null
  };
}

function step(name: string, status: StepDiffJSON['status']): StepDiffJSON {
  return {
    name,
    status,
    code: { a: 'x = 1', b: 'x = 1', diff: '' },
    inputs: [],
    packages: [],
    files: [],
    outputs: [],
    tasks: { a: 1, b: 1 }
  };
}

describe('unified diff lines', () => {
  const diff = [
    '--- a/make',
    '+++ b/make',
    '@@ -1,3 +1,3 @@',
    ' items = list(range(n))',
    '-print(n)',
    '--- a removed line that starts with dashes',
    '+print(n * 2)',
    '+++ an added line with pluses',
    '',
    '\\ No newline at end of file'
  ].join('\n');

  it('classifies headers, hunks, additions, removals and context', () => {
    expect(diffLines(diff).map(l => l.kind)).toEqual([
      'header',
      'header',
      'hunk',
      'context',
      'remove',
      'remove',
      'add',
      'add',
      'context',
      'meta'
    ]);
  });

  it('keeps the text of each line as it is', () => {
    const lines = diffLines('@@ -1 +1 @@\n-<b>a</b>\n+<script>x</script>\n');
    expect(lines.map(l => l.text)).toEqual([
      '@@ -1 +1 @@',
      '-<b>a</b>',
      '+<script>x</script>'
    ]);
  });

  it('classifies a single line, by default inside a hunk', () => {
    expect(classifyDiffLine('+x')).toBe('add');
    expect(classifyDiffLine('-x')).toBe('remove');
    expect(classifyDiffLine('---x')).toBe('remove');
    expect(classifyDiffLine('---x', false)).toBe('header');
    expect(classifyDiffLine('@@ -1 +1 @@', false)).toBe('hunk');
    expect(classifyDiffLine(' x')).toBe('context');
  });

  it('gives no lines for no diff', () => {
    expect(diffLines('')).toEqual([]);
  });
});

describe('orderRuns', () => {
  it('puts the older run first, whatever order they were ticked in', () => {
    const old = run('20261127-010000-aaaaaa', '2026-11-27T01:00:00Z');
    const newer = run('20261127-020000-bbbbbb', '2026-11-27T02:00:00Z');
    expect(orderRuns(newer, old)).toEqual([old, newer]);
    expect(orderRuns(old, newer)).toEqual([old, newer]);
  });

  it('falls back on the ids, and a run without a start is the newer', () => {
    const t = '2026-11-27T01:00:00Z';
    const x = run('20261127-010000-aaaaaa', t);
    const y = run('20261127-010000-bbbbbb', t);
    expect(orderRuns(y, x)).toEqual([x, y]);
    const unstarted = run('0', null);
    expect(orderRuns(unstarted, y)).toEqual([y, unstarted]);
  });
});

describe('rows', () => {
  it('shows parameters as JSON, absent sides as a dash', () => {
    expect(
      paramRows([
        { name: 'n', a: 3, b: 4, status: 'changed' },
        { name: 'greeting', a: null, b: 'hi', status: 'added' },
        { name: 'old', a: [1, 2], b: null, status: 'removed' },
        { name: 'none', a: 1, b: null, status: 'changed' }
      ])
    ).toEqual([
      { name: 'n', status: 'changed', a: '3', b: '4' },
      { name: 'greeting', status: 'added', a: '—', b: '"hi"' },
      { name: 'old', status: 'removed', a: '[1,2]', b: '—' },
      { name: 'none', status: 'changed', a: '1', b: 'null' }
    ]);
  });

  it('lists only packages whose versions differ, by name', () => {
    expect(
      packageRows([
        { name: 'pandas', a: '2.1.0', b: '2.2.0' },
        { name: 'dask', a: '2024.1', b: '2024.1' },
        { name: 'Polars', a: null, b: '1.0' }
      ])
    ).toEqual([
      { name: 'pandas', status: 'changed', a: '2.1.0', b: '2.2.0' },
      { name: 'Polars', status: 'added', a: '—', b: '1.0' }
    ]);
  });

  it('shows inputs by repr, else type, else hash; modules marked', () => {
    const rows = inputRows([
      {
        name: 'Cs',
        kind: 'value',
        a: { hash: 'aaaa', repr: '[0.1, 1.0]', type: 'builtins.list' },
        b: { hash: 'bbbb', repr: null, type: 'builtins.list' }
      },
      {
        name: 'np',
        kind: 'module',
        a: null,
        b: { hash: '0123456789abcdef', repr: null, type: null }
      }
    ]);
    expect(rows[0]).toMatchObject({
      name: 'Cs',
      status: 'changed',
      a: '[0.1, 1.0]',
      b: '<builtins.list>',
      title: 'A aaaa\nB bbbb'
    });
    expect(rows[1]).toMatchObject({
      name: 'np (module)',
      status: 'added',
      a: '—',
      b: '0123456789'
    });
  });

  it('shows data files with size and short hash', () => {
    expect(
      fileRows([
        {
          path: 'data.csv',
          a: { size: 2048, hash: 'ffffffffffffffffff' },
          b: null
        }
      ])
    ).toEqual([
      {
        name: 'data.csv',
        status: 'removed',
        a: '2 KiB ffffffffff',
        b: '—',
        title: 'A ffffffffffffffffff'
      }
    ]);
  });

  it("shows an output's summary, or why there is none", () => {
    const ref = { hash: 'h', size: 100, type: 'builtins.int' };
    const rows = outputRows([
      {
        name: 'total',
        index: null,
        a: ref,
        b: { ...ref, hash: 'g' },
        same: false,
        summary: {
          kind: 'number',
          same: false,
          text: '3 → 6 (+3)',
          details: ['relative change +100%']
        },
        note: null
      },
      {
        name: 'model',
        index: 2,
        a: ref,
        b: ref,
        same: false,
        summary: null,
        note: 'too large to load (2.1 GiB)'
      }
    ]);
    expect(rows[0]).toEqual({
      label: 'total',
      status: 'changed',
      a: 'int 100 B',
      b: 'int 100 B',
      text: '3 → 6 (+3)',
      details: ['relative change +100%'],
      note: null,
      same: false
    });
    expect(rows[1]).toMatchObject({
      label: 'model[2]',
      text: null,
      details: [],
      note: 'too large to load (2.1 GiB)'
    });
    expect(outputLabel('x', 0)).toBe('x[0]');
  });
});

describe('steps', () => {
  it('folds runs of unchanged steps into one item each', () => {
    const items = stepItems([
      step('load', 'same'),
      step('clean', 'same'),
      step('fit', 'changed'),
      step('report', 'same'),
      step('extra', 'added')
    ]);
    expect(items.map(i => (i.kind === 'same' ? i.names : i.step.name))).toEqual(
      [['load', 'clean'], 'fit', ['report'], 'extra']
    );
    expect(sameStepsLine(['load', 'clean'])).toBe(
      '2 unchanged steps: load, clean'
    );
    expect(sameStepsLine(['report'])).toBe('1 unchanged step: report');
  });

  it('sums the diff up in one line', () => {
    const reply = {
      a: run('a', null),
      b: run('b', null),
      params: [{ name: 'n', a: 3, b: 4, status: 'changed' }],
      environment: { python: null, nbflow: null, packages: [] },
      steps: [],
      counts: { steps_changed: 2, outputs_changed: 1 }
    } as DiffReply;
    expect(diffHeadline(reply)).toBe(
      '1 parameter changed, 2 steps changed, 1 output differs.'
    );
    expect(
      diffHeadline({
        ...reply,
        params: [],
        counts: { steps_changed: 0, outputs_changed: 0 }
      })
    ).toMatch(/No differences/);
  });
});

describe('step options', () => {
  const opts = {
    name: 'fit',
    foreach: { var: 'C', expr: 'Cs' },
    retry: 2,
    timeout: null,
    catch: false,
    force: false,
    resources: { memory: 4e9 }
  };

  it('writes a header as the cell does', () => {
    expect(formatStepOptions(opts)).toBe(
      '--foreach C in Cs --retry 2 %%resources memory=4G'
    );
    expect(
      formatStepOptions({ ...opts, foreach: null, retry: 0, resources: {} })
    ).toBe('(none)');
    expect(formatStepOptions(null)).toBe('—');
  });

  it('gives a row only when the header changed', () => {
    expect(optionRows(step('fit', 'same'))).toEqual([]);
    expect(
      optionRows({
        ...step('fit', 'changed'),
        options: { a: opts, b: { ...opts, force: true } }
      })
    ).toEqual([
      {
        name: 'header',
        status: 'changed',
        a: '--foreach C in Cs --retry 2 %%resources memory=4G',
        b: '--foreach C in Cs --retry 2 --force %%resources memory=4G'
      }
    ]);
  });
});
