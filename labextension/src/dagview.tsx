// The run's DAG drawn as SVG from the layered layout of dag.ts: a box per step coloured by its
// state, an arrow per edge; clicking a box selects the step.

import * as React from 'react';

import { layoutDag, StepState } from './dag';
import { DagJSON } from './model';

export const STATE_LABELS: Record<StepState, string> = {
  succeeded: 'succeeded',
  failed: 'failed',
  timed_out: 'timed out',
  cached: 'cached',
  running: 'running',
  cancelled: 'cancelled',
  pending: 'pending'
};

export interface IDagViewProps {
  dag: DagJSON;
  states: Record<string, StepState>;
  selected: string | null;
  onSelect: (step: string) => void;
}

export function DagView(props: IDagViewProps): JSX.Element {
  const { dag, states, selected, onSelect } = props;
  const layout = React.useMemo(
    () => layoutDag(dag.nodes, dag.edges),
    [JSON.stringify(dag)]
  );
  if (layout.nodes.length === 0) {
    return <div className="jp-nbflow-empty">This run has no steps.</div>;
  }
  const byId = new Map(layout.nodes.map(n => [n.id, n]));
  const half = 12; // half the node height (DEFAULT_LAYOUT.nodeHeight / 2)
  return (
    <svg
      className="jp-nbflow-dag"
      viewBox={`0 0 ${layout.width} ${layout.height}`}
      width={layout.width}
      role="img"
      aria-label="The run's steps and their dependencies"
    >
      <defs>
        <marker
          id="jp-nbflow-arrow"
          viewBox="0 0 10 10"
          refX="9"
          refY="5"
          markerWidth="6"
          markerHeight="6"
          orient="auto-start-reverse"
        >
          <path d="M 0 0 L 10 5 L 0 10 z" className="jp-nbflow-dag-arrow" />
        </marker>
      </defs>
      {layout.edges.map(({ from, to }) => {
        const a = byId.get(from)!;
        const b = byId.get(to)!;
        const y1 = a.y + half;
        const y2 = b.y - half - 1;
        const mid = (y1 + y2) / 2;
        return (
          <path
            key={`${from}->${to}`}
            className="jp-nbflow-dag-edge"
            d={`M ${a.x} ${y1} C ${a.x} ${mid}, ${b.x} ${mid}, ${b.x} ${y2}`}
            markerEnd="url(#jp-nbflow-arrow)"
          />
        );
      })}
      {layout.nodes.map(n => {
        const state = states[n.id] ?? 'pending';
        return (
          <g
            key={n.id}
            className={`jp-nbflow-dag-node jp-nbflow-state-${state}${
              n.id === selected ? ' jp-mod-selected' : ''
            }`}
            onClick={() => onSelect(n.id)}
            role="button"
            tabIndex={0}
            onKeyDown={e => {
              if (e.key === 'Enter' || e.key === ' ') {
                onSelect(n.id);
              }
            }}
          >
            <title>{`${n.id}: ${STATE_LABELS[state]}`}</title>
            <rect
              x={n.x - n.width / 2}
              y={n.y - half}
              width={n.width}
              height={2 * half}
              rx={4}
            />
            <text
              x={n.x}
              y={n.y}
              dominantBaseline="central"
              textAnchor="middle"
            >
              {n.id}
            </text>
          </g>
        );
      })}
    </svg>
  );
}

/** The colour key under the DAG. */
export function StateLegend(): JSX.Element {
  const shown: StepState[] = [
    'succeeded',
    'failed',
    'cached',
    'running',
    'cancelled',
    'pending'
  ];
  return (
    <div className="jp-nbflow-legend">
      {shown.map(s => (
        <span key={s} className="jp-nbflow-legend-item">
          <span className={`jp-nbflow-swatch jp-nbflow-state-${s}`} />
          {STATE_LABELS[s]}
        </span>
      ))}
    </div>
  );
}
