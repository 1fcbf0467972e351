// The DAG's layered layout and a step's state from its tasks.

import { assignLayers, latestTasks, layoutDag, stepState } from '../dag';
import { TaskStatus } from '../model';

function toObject<T>(entries: Iterable<[string, T]>): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [k, v] of entries) {
    out[k] = v;
  }
  return out;
}

describe('assignLayers', () => {
  it('puts a node one layer below its deepest upstream node', () => {
    const layers = assignLayers(
      ['load', 'split', 'logreg', 'forest', 'report'],
      [
        ['load', 'split'],
        ['split', 'logreg'],
        ['split', 'forest'],
        ['logreg', 'report'],
        ['forest', 'report'],
        ['load', 'report']
      ]
    );
    expect(toObject(layers)).toEqual({
      load: 0,
      split: 1,
      logreg: 2,
      forest: 2,
      report: 3
    });
  });

  it('does not depend on the order of nodes or edges', () => {
    const a = assignLayers(
      ['c', 'b', 'a'],
      [
        ['b', 'c'],
        ['a', 'b']
      ]
    );
    expect(toObject(a)).toEqual({ a: 0, b: 1, c: 2 });
  });

  it('puts isolated nodes in layer 0 and ignores unknown nodes and self loops', () => {
    const a = assignLayers(
      ['x', 'y'],
      [
        ['ghost', 'y'],
        ['x', 'x']
      ]
    );
    expect(toObject(a)).toEqual({ x: 0, y: 0 });
  });
});

describe('layoutDag', () => {
  const nodes = ['load', 'split', 'logreg', 'forest', 'report'];
  const edges: [string, string][] = [
    ['load', 'split'],
    ['split', 'logreg'],
    ['split', 'forest'],
    ['logreg', 'report'],
    ['forest', 'report']
  ];

  it('lays layers out top to bottom, nodes within a layer left to right', () => {
    const layout = layoutDag(nodes, edges);
    expect(layout.layers).toEqual([
      ['load'],
      ['split'],
      ['logreg', 'forest'],
      ['report']
    ]);
    const at = toObject(
      layout.nodes.map(n => [n.id, n] as [string, (typeof layout.nodes)[0]])
    );
    expect(at.load.y).toBeLessThan(at.split.y);
    expect(at.split.y).toBeLessThan(at.logreg.y);
    expect(at.logreg.y).toBe(at.forest.y);
    expect(at.logreg.x).toBeLessThan(at.forest.x);
    expect(at.forest.y).toBeLessThan(at.report.y);
    // keeps the caller's node order, and every edge
    expect(layout.nodes.map(n => n.id)).toEqual(nodes);
    expect(layout.edges).toHaveLength(5);
  });

  it('fits every box inside the drawing without overlaps', () => {
    const layout = layoutDag(nodes, edges);
    for (const n of layout.nodes) {
      expect(n.x - n.width / 2).toBeGreaterThanOrEqual(0);
      expect(n.x + n.width / 2).toBeLessThanOrEqual(layout.width);
      expect(n.y).toBeLessThanOrEqual(layout.height);
    }
    const row = layout.nodes
      .filter(n => n.layer === 2)
      .sort((a, b) => a.x - b.x);
    expect(row[0].x + row[0].width / 2).toBeLessThan(
      row[1].x - row[1].width / 2
    );
  });

  it('orders a layer by where its upstream nodes are', () => {
    // b2 hangs under b, a2 under a: even listed first, b2 goes right of a2.
    const layout = layoutDag(
      ['a', 'b', 'b2', 'a2'],
      [
        ['a', 'a2'],
        ['b', 'b2']
      ]
    );
    expect(layout.layers).toEqual([
      ['a', 'b'],
      ['a2', 'b2']
    ]);
  });

  it('handles an empty graph', () => {
    const layout = layoutDag([], []);
    expect(layout.nodes).toEqual([]);
    expect(layout.layers).toEqual([]);
    expect(layout.width).toBeGreaterThan(0);
  });
});

describe('stepState', () => {
  const tasks = (...s: TaskStatus[]) => s.map(status => ({ status }));

  it.each([
    [[], 'pending'],
    [['succeeded'], 'succeeded'],
    [['cached', 'cached'], 'cached'],
    [['cached', 'succeeded'], 'succeeded'],
    [['succeeded', 'running', 'failed'], 'running'],
    [['succeeded', 'timed_out'], 'failed'],
    [['failed', 'cancelled'], 'failed'],
    [['cancelled', 'succeeded'], 'cancelled'],
    [['pending', 'succeeded'], 'pending']
  ])('%j -> %s', (statuses, state) => {
    expect(stepState(tasks(...(statuses as TaskStatus[])))).toBe(state);
  });
});

describe('latestTasks', () => {
  it('keeps the latest execution of each step and index, in input order', () => {
    const tasks = [
      { id: 1, step: 'load', index: null, status: 'failed' as TaskStatus },
      { id: 2, step: 'sq', index: 0, status: 'succeeded' as TaskStatus },
      { id: 3, step: 'sq', index: 1, status: 'succeeded' as TaskStatus },
      { id: 4, step: 'load', index: null, status: 'succeeded' as TaskStatus },
      { id: 5, step: 'sq', index: 1, status: 'cached' as TaskStatus }
    ];
    expect(latestTasks(tasks).map(t => t.id)).toEqual([2, 4, 5]);
    // so a step that failed, then ran again successfully, reads succeeded
    expect(stepState(latestTasks(tasks).filter(t => t.step === 'load'))).toBe(
      'succeeded'
    );
  });

  it('keeps every task of a headless run', () => {
    const tasks = [
      { id: 7, step: 'a', index: null },
      { id: 8, step: 'b', index: 0 },
      { id: 9, step: 'b', index: 1 }
    ];
    expect(latestTasks(tasks)).toEqual(tasks);
  });
});
