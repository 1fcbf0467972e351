// A run's DAG as geometry: a layered layout computed from the edges (a step's layer is one more
// than its deepest upstream step; within a layer, steps are ordered by where their upstream
// steps sit, then by notebook order), and a step's state from its tasks. Pure; dagview.tsx draws it.

import { TaskJSON, TaskStatus } from './model';

/** A step's state in the DAG: a task state, summarised over its tasks. */
export type StepState = TaskStatus;

export interface LayoutNode {
  id: string;
  /** 0 for steps without upstream steps. */
  layer: number;
  /** Position within the layer, from 0. */
  order: number;
  /** Centre of the node's box. */
  x: number;
  y: number;
  width: number;
}

export interface LayoutEdge {
  from: string;
  to: string;
}

export interface DagLayout {
  nodes: LayoutNode[];
  edges: LayoutEdge[];
  layers: string[][];
  width: number;
  height: number;
}

export interface LayoutOptions {
  /** Height of a node box. */
  nodeHeight: number;
  /** Vertical distance between the centres of two layers. */
  layerGap: number;
  /** Horizontal space between two boxes in a layer. */
  nodeGap: number;
  /** Width of one character of a step name, to size the boxes. */
  charWidth: number;
  /** Horizontal padding inside a box. */
  padding: number;
  /** Margin around the drawing. */
  margin: number;
}

export const DEFAULT_LAYOUT: LayoutOptions = {
  nodeHeight: 24,
  layerGap: 52,
  nodeGap: 14,
  charWidth: 7,
  padding: 10,
  margin: 8
};

/**
 * Layers from the edges: a node's layer is 0 without upstream nodes, else one more than the
 * deepest of them (the graph has no cycles; an edge naming an unknown node is ignored).
 */
export function assignLayers(
  nodes: string[],
  edges: [string, string][]
): Map<string, number> {
  const known = new Set(nodes);
  const upstream = new Map<string, string[]>(nodes.map(n => [n, []]));
  for (const [from, to] of edges) {
    if (known.has(from) && known.has(to) && from !== to) {
      upstream.get(to)!.push(from);
    }
  }
  const layer = new Map<string, number>();
  const visiting = new Set<string>();
  const visit = (node: string): number => {
    const done = layer.get(node);
    if (done !== undefined) {
      return done;
    }
    if (visiting.has(node)) {
      return 0; // a cycle (not expected): break it here rather than recurse forever
    }
    visiting.add(node);
    let depth = 0;
    for (const up of upstream.get(node)!) {
      depth = Math.max(depth, visit(up) + 1);
    }
    visiting.delete(node);
    layer.set(node, depth);
    return depth;
  };
  nodes.forEach(visit);
  return layer;
}

/** Lay the DAG out top to bottom, one row per layer, each row centred. */
export function layoutDag(
  nodes: string[],
  edges: [string, string][],
  options: Partial<LayoutOptions> = {}
): DagLayout {
  const opt = { ...DEFAULT_LAYOUT, ...options };
  const unique = Array.from(new Set(nodes));
  const layerOf = assignLayers(unique, edges);
  const rank = new Map(unique.map((n, i) => [n, i]));
  const depth = unique.length
    ? Math.max(...unique.map(n => layerOf.get(n)!))
    : -1;
  const layers: string[][] = [];
  for (let l = 0; l <= depth; l++) {
    layers.push(unique.filter(n => layerOf.get(n) === l));
  }

  // Order each layer by the mean position of its upstream nodes (barycentre), ties by notebook
  // order: fewer crossings without a graph library.
  const position = new Map<string, number>();
  const upstream = new Map<string, string[]>(unique.map(n => [n, []]));
  for (const [from, to] of edges) {
    if (upstream.has(to) && rank.has(from) && from !== to) {
      upstream.get(to)!.push(from);
    }
  }
  layers.forEach((layer, l) => {
    if (l > 0) {
      const key = (n: string): number => {
        const ups = upstream.get(n)!.filter(u => position.has(u));
        return ups.length
          ? ups.reduce((a, u) => a + position.get(u)!, 0) / ups.length
          : rank.get(n)!;
      };
      layer.sort((a, b) => key(a) - key(b) || rank.get(a)! - rank.get(b)!);
    }
    layer.forEach((n, i) => position.set(n, i));
  });

  const boxWidth = (n: string): number =>
    Math.max(40, n.length * opt.charWidth + 2 * opt.padding);
  const rowWidth = (layer: string[]): number =>
    layer.reduce((a, n) => a + boxWidth(n), 0) +
    Math.max(0, layer.length - 1) * opt.nodeGap;
  const inner = Math.max(0, ...layers.map(rowWidth));
  const width = inner + 2 * opt.margin;
  const height = layers.length
    ? opt.margin * 2 + opt.nodeHeight + (layers.length - 1) * opt.layerGap
    : 2 * opt.margin;

  const laid: LayoutNode[] = [];
  layers.forEach((layer, l) => {
    let x = opt.margin + (inner - rowWidth(layer)) / 2;
    const y = opt.margin + opt.nodeHeight / 2 + l * opt.layerGap;
    layer.forEach((id, order) => {
      const w = boxWidth(id);
      laid.push({ id, layer: l, order, x: x + w / 2, y, width: w });
      x += w + opt.nodeGap;
    });
  });
  // Keep the caller's node order in the output.
  laid.sort((a, b) => rank.get(a.id)! - rank.get(b.id)!);
  const edgeList = edges
    .filter(([f, t]) => rank.has(f) && rank.has(t) && f !== t)
    .map(([from, to]) => ({ from, to }));
  return { nodes: laid, edges: edgeList, layers, width, height };
}

/**
 * The latest task of each (step, foreach index): an interactive run records every execution of
 * a step cell as a task of its own, and the step's state is that of its latest execution.
 * (A headless run has one task per step and index, all kept.) Keeps the input order.
 */
export function latestTasks<T extends Pick<TaskJSON, 'id' | 'step' | 'index'>>(
  tasks: T[]
): T[] {
  const latest = new Map<string, T>();
  for (const t of tasks) {
    const key = `${t.step}\u0000${t.index ?? ''}`;
    const seen = latest.get(key);
    if (!seen || t.id > seen.id) {
      latest.set(key, t);
    }
  }
  const keep = new Set(latest.values());
  return tasks.filter(t => keep.has(t));
}

/**
 * A step's state from its tasks: running wins, then failed (timed out counts as failed), then
 * cancelled, then pending; a step whose tasks all finished well is succeeded, or cached if
 * every task was a cache hit. A step without tasks (not reached yet) is pending.
 */
export function stepState(tasks: Pick<TaskJSON, 'status'>[]): StepState {
  if (tasks.length === 0) {
    return 'pending';
  }
  const has = (s: TaskStatus): boolean => tasks.some(t => t.status === s);
  if (has('running')) {
    return 'running';
  }
  if (has('failed') || has('timed_out')) {
    return 'failed';
  }
  if (has('cancelled')) {
    return 'cancelled';
  }
  if (has('pending')) {
    return 'pending';
  }
  return tasks.every(t => t.status === 'cached') ? 'cached' : 'succeeded';
}
