// One run: its summary, its DAG, its steps, and the selected step's tasks. Clicking a step (in
// the DAG or the list) selects it and scrolls the notebook to the step's cell.

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import * as React from 'react';

import { latestTasks, StepState, stepState } from './dag';
import { DagView, STATE_LABELS, StateLegend } from './dagview';
import {
  elapsedSince,
  formatDuration,
  formatResources,
  formatStart
} from './format';
import { RunDetail, StepJSON, TaskJSON } from './model';
import { SidebarModel } from './sidebarmodel';
import { RunTagsRows } from './tagsview';
import { TaskView } from './taskview';

export interface IRunViewProps {
  model: SidebarModel;
  run: RunDetail;
  sanitizer: IRenderMime.ISanitizer;
  onRevealStep: (step: StepJSON, run: RunDetail) => void;
}

export function RunView(props: IRunViewProps): JSX.Element {
  const { model, run } = props;
  // Steps are judged by their latest executions (an interactive run keeps every execution).
  const tasksByStep = new Map<string, TaskJSON[]>();
  for (const t of latestTasks(run.tasks)) {
    tasksByStep.set(t.step, [...(tasksByStep.get(t.step) ?? []), t]);
  }
  const states: Record<string, StepState> = {};
  for (const s of run.steps) {
    states[s.name] = stepState(tasksByStep.get(s.name) ?? []);
  }
  const select = (name: string): void => {
    model.selectStep(name === model.selectedStep ? null : name);
    const step = run.steps.find(s => s.name === name);
    if (step) {
      props.onRevealStep(step, run);
    }
  };
  const duration =
    run.started_at && run.finished_at
      ? (new Date(run.finished_at).getTime() -
          new Date(run.started_at).getTime()) /
        1000
      : elapsedSince(run.started_at);
  const params = Object.entries(run.params ?? {});
  const selected = run.steps.find(s => s.name === model.selectedStep);

  return (
    <div className="jp-nbflow-run">
      <table className="jp-nbflow-fields">
        <tbody>
          <tr>
            <th>status</th>
            <td>
              <span className={`jp-nbflow-badge jp-nbflow-state-${run.status}`}>
                {run.status}
              </span>{' '}
              <span className="jp-nbflow-muted">{run.kind}</span>
            </td>
          </tr>
          <tr>
            <th>started</th>
            <td>{formatStart(run.started_at)}</td>
          </tr>
          <tr>
            <th>{run.finished_at ? 'duration' : 'elapsed'}</th>
            <td>{formatDuration(duration)}</td>
          </tr>
          {run.resumed_from ? (
            <tr>
              <th>resumed from</th>
              <td className="jp-nbflow-mono">{run.resumed_from}</td>
            </tr>
          ) : null}
          {params.length > 0 ? (
            <tr>
              <th>params</th>
              <td className="jp-nbflow-mono">
                {params.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(' ')}
              </td>
            </tr>
          ) : null}
          <RunTagsRows
            key={run.id}
            tags={run.tags ?? []}
            note={run.note ?? null}
            busy={model.savingTags}
            error={model.tagsError}
            onUpdate={request => model.updateTags(request)}
          />
          {run.cluster ? (
            <tr>
              <th>cluster</th>
              <td>
                {run.cluster.kind}
                {run.cluster.workers !== undefined
                  ? `, ${run.cluster.workers} workers`
                  : ''}
              </td>
            </tr>
          ) : null}
        </tbody>
      </table>
      {run.error ? (
        <pre className="jp-nbflow-pre jp-nbflow-error">{run.error}</pre>
      ) : null}

      <DagView
        dag={run.dag}
        states={states}
        selected={model.selectedStep}
        onSelect={select}
      />
      <StateLegend />

      <div className="jp-nbflow-subhead">steps</div>
      <ul className="jp-nbflow-steps">
        {run.steps.map(s => {
          const tasks = tasksByStep.get(s.name) ?? [];
          const state = states[s.name];
          const done = tasks.filter(
            t => t.status === 'succeeded' || t.status === 'cached'
          ).length;
          return (
            <li
              key={s.name}
              className={`jp-nbflow-step${
                s.name === model.selectedStep ? ' jp-mod-selected' : ''
              }`}
              onClick={() => select(s.name)}
              title="Show its tasks and scroll the notebook to its cell"
            >
              <span className={`jp-nbflow-dot jp-nbflow-state-${state}`} />
              <span className="jp-nbflow-mono">{s.name}</span>
              <span className="jp-nbflow-muted jp-nbflow-aside">
                {STATE_LABELS[state]}
                {tasks.length > 1 ? ` · ${done}/${tasks.length} tasks` : ''}
                {s.cell !== null ? ` · cell ${s.cell}` : ''}
              </span>
            </li>
          );
        })}
      </ul>

      {selected ? (
        <StepView
          model={model}
          step={selected}
          tasks={model.stepTasks}
          sanitizer={props.sanitizer}
        />
      ) : null}
    </div>
  );
}

function StepView(props: {
  model: SidebarModel;
  step: StepJSON;
  tasks: TaskJSON[];
  sanitizer: IRenderMime.ISanitizer;
}): JSX.Element {
  const { model, step, tasks } = props;
  const opts = step.options;
  const flags = [
    opts.foreach ? `--foreach ${opts.foreach.var} in ${opts.foreach.expr}` : '',
    opts.retry ? `--retry ${opts.retry}` : '',
    opts.timeout !== null ? `--timeout ${opts.timeout}` : '',
    opts.catch ? '--catch' : '',
    opts.force ? '--force' : ''
  ].filter(Boolean);
  return (
    <div className="jp-nbflow-stepview">
      <div className="jp-nbflow-head2">
        step <span className="jp-nbflow-mono">{step.name}</span>
      </div>
      <table className="jp-nbflow-fields">
        <tbody>
          {flags.length ? (
            <tr>
              <th>options</th>
              <td className="jp-nbflow-mono">{flags.join(' ')}</td>
            </tr>
          ) : null}
          <tr>
            <th>requests</th>
            <td>{formatResources(opts.resources)}</td>
          </tr>
          <tr>
            <th>inputs</th>
            <td className="jp-nbflow-mono">{step.inputs.join(', ') || '—'}</td>
          </tr>
          <tr>
            <th>outputs</th>
            <td className="jp-nbflow-mono">{step.outputs.join(', ') || '—'}</td>
          </tr>
        </tbody>
      </table>
      {tasks.length === 0 ? (
        <div className="jp-nbflow-muted">no task yet</div>
      ) : null}
      {tasks.map(t => {
        const open = model.expandedTask === t.id;
        const repeated = tasks.filter(u => u.index === t.index).length > 1;
        const label =
          (t.index === null
            ? 'task'
            : `[${t.index}]${t.item !== null ? ` ${t.item}` : ''}`) +
          (repeated ? ` · ${formatStart(t.started_at)}` : '');
        return (
          <div key={t.id} className="jp-nbflow-taskrow">
            <button
              className={`jp-nbflow-taskhead${open ? ' jp-mod-selected' : ''}`}
              onClick={() => model.expandTask(open ? null : t.id)}
              aria-expanded={open}
            >
              <span className={`jp-nbflow-dot jp-nbflow-state-${t.status}`} />
              <span className="jp-nbflow-mono jp-nbflow-ellipsis">{label}</span>
              <span className="jp-nbflow-muted jp-nbflow-aside">
                {t.status.replace('_', ' ')} · {formatDuration(t.duration)}
              </span>
            </button>
            {open ? (
              <TaskView model={model} task={t} sanitizer={props.sanitizer} />
            ) : null}
          </div>
        );
      })}
    </div>
  );
}
