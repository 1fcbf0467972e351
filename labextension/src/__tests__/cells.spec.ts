// From a step to its notebook cell: by its `%%step NAME` header first, else by the recorded
// cell number (headless: 1-based position; interactive: execution count).

import { CellInfo, findStepCell } from '../cells';

const code = (
  source: string,
  executionCount: number | null = null
): CellInfo => ({
  type: 'code',
  source,
  executionCount
});
const markdown = (source: string): CellInfo => ({
  type: 'markdown',
  source,
  executionCount: null
});

const cells: CellInfo[] = [
  markdown('# Quickstart\n%%step load'),
  code('%load_ext nbflow', 1),
  code('%%step load\nX = 1', 7),
  code('%%resources memory=4G\n%%step forest\nf = X', 3),
  code('print(X)', 4),
  code('y = 2', 9)
];

describe('findStepCell', () => {
  it('finds the cell by its header, whatever the run kind or cell number', () => {
    expect(findStepCell(cells, { name: 'load', cell: 99 }, 'headless')).toBe(2);
    expect(
      findStepCell(cells, { name: 'forest', cell: 1 }, 'interactive')
    ).toBe(3);
  });

  it('ignores markdown cells that mention a header', () => {
    expect(
      findStepCell(
        [markdown('%%step load'), code('%%step load')],
        { name: 'load', cell: 1 },
        'headless'
      )
    ).toBe(1);
  });

  it('falls back to the 1-based position for headless runs', () => {
    expect(findStepCell(cells, { name: 'renamed', cell: 5 }, 'headless')).toBe(
      4
    );
    expect(findStepCell(cells, { name: 'renamed', cell: 6 }, 'resume')).toBe(5);
    expect(findStepCell(cells, { name: 'renamed', cell: 1 }, 'headless')).toBe(
      -1
    ); // markdown
    expect(findStepCell(cells, { name: 'renamed', cell: 40 }, 'headless')).toBe(
      -1
    );
  });

  it('falls back to the execution count for interactive runs', () => {
    expect(
      findStepCell(cells, { name: 'renamed', cell: 9 }, 'interactive')
    ).toBe(5);
    expect(
      findStepCell(cells, { name: 'renamed', cell: 2 }, 'interactive')
    ).toBe(-1);
  });

  it('gives up without a cell number', () => {
    expect(
      findStepCell(cells, { name: 'renamed', cell: null }, 'headless')
    ).toBe(-1);
  });
});
