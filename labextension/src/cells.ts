// From a run's step to the notebook cell that defines it, and back to the notebook on screen.
// `findStepCell` is pure: the code cell whose header names the step (`%%step NAME`) first, else
// the step's recorded `cell` number (headless runs: 1-based position; interactive: execution count).

import { ICodeCellModel } from '@jupyterlab/cells';
import { Notebook, NotebookPanel } from '@jupyterlab/notebook';

import { RunKind } from './model';
import { stepName } from './resources';

/** What findStepCell needs to know of each cell of a notebook. */
export interface CellInfo {
  type: string;
  source: string;
  executionCount: number | null;
}

/** The index of the cell that defines `step`, or -1. */
export function findStepCell(
  cells: CellInfo[],
  step: { name: string; cell: number | null },
  kind: RunKind | string
): number {
  const byHeader = cells.findIndex(
    c => c.type === 'code' && stepName(c.source) === step.name
  );
  if (byHeader >= 0) {
    return byHeader;
  }
  if (step.cell === null || step.cell === undefined) {
    return -1;
  }
  if (kind === 'interactive') {
    return cells.findIndex(
      c => c.type === 'code' && c.executionCount === step.cell
    );
  }
  const index = step.cell - 1;
  return index >= 0 && index < cells.length && cells[index].type === 'code'
    ? index
    : -1;
}

/** The cells of a notebook widget, as findStepCell reads them. */
export function cellInfos(notebook: Notebook): CellInfo[] {
  const out: CellInfo[] = [];
  const cells = notebook.model?.cells;
  if (!cells) {
    return out;
  }
  for (let i = 0; i < cells.length; i++) {
    const model = cells.get(i);
    out.push({
      type: model.type,
      source: model.sharedModel.getSource(),
      executionCount:
        model.type === 'code'
          ? ((model as ICodeCellModel).executionCount ?? null)
          : null
    });
  }
  return out;
}

/** Make cell `index` of the panel's notebook active and scroll it into view. */
export async function revealCell(
  panel: NotebookPanel,
  index: number
): Promise<void> {
  const notebook = panel.content;
  notebook.activeCellIndex = index;
  notebook.mode = 'command';
  await notebook.scrollToItem(index, 'center');
}
