// One task of a step: state, worker, resources, cache key, error, its logs (the tail, then "show
// all") and its outputs. Everything the server sent is shown as text.

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import * as React from 'react';

import { Outputs } from './artifactview';
import {
  formatBytes,
  formatDuration,
  formatResources,
  formatStart
} from './format';
import { TaskJSON } from './model';
import { LOG_TAIL, SidebarModel, Stream } from './sidebarmodel';

export interface ITaskViewProps {
  model: SidebarModel;
  task: TaskJSON;
  sanitizer: IRenderMime.ISanitizer;
}

export function TaskView({
  model,
  task,
  sanitizer
}: ITaskViewProps): JSX.Element {
  const rows: [string, React.ReactNode][] = [
    ['attempts', String(task.attempts)],
    ['started', formatStart(task.started_at)],
    ['duration', formatDuration(task.duration)],
    ['worker', task.worker ?? '—'],
    ['resources', formatResources(task.resources)],
    [
      'cache key',
      <span className="jp-nbflow-mono" title={task.cache_key ?? ''}>
        {task.cache_key ?? '—'}
      </span>
    ]
  ];
  if (task.cached_from !== null) {
    rows.push(['cached from', `task ${task.cached_from}`]);
  }
  if (task.item !== null) {
    rows.unshift(['item', <span className="jp-nbflow-mono">{task.item}</span>]);
  }
  return (
    <div className="jp-nbflow-task">
      <table className="jp-nbflow-fields">
        <tbody>
          {rows.map(([k, v]) => (
            <tr key={k}>
              <th>{k}</th>
              <td>{v}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {task.error ? (
        <div>
          <div className="jp-nbflow-subhead">
            error{task.error_type ? `: ${task.error_type}` : ''}
          </div>
          <pre className="jp-nbflow-pre jp-nbflow-error">{task.error}</pre>
        </div>
      ) : null}
      <LogView model={model} taskId={task.id} stream="stdout" />
      <LogView model={model} taskId={task.id} stream="stderr" />
      <div className="jp-nbflow-subhead">outputs</div>
      <Outputs
        outputs={task.output_details}
        state={hash => model.artifact(hash)}
        onPreview={hash => void model.loadArtifact(hash)}
        onLineage={name => model.openLineage(task, name)}
        sanitizer={sanitizer}
      />
      {task.files.length > 0 ? (
        <div>
          <div className="jp-nbflow-subhead">data files read</div>
          <ul className="jp-nbflow-files">
            {task.files.map(f => (
              <li key={f.path} className="jp-nbflow-mono" title={f.hash}>
                {f.path} ({formatBytes(f.size)})
              </li>
            ))}
          </ul>
        </div>
      ) : null}
    </div>
  );
}

function LogView(props: {
  model: SidebarModel;
  taskId: number;
  stream: Stream;
}): JSX.Element | null {
  const { model, taskId, stream } = props;
  const log = model.log(taskId, stream);
  if (!log) {
    return null;
  }
  if (!log.text && !log.error) {
    return log.loading ? (
      <div className="jp-nbflow-muted">loading {stream}…</div>
    ) : (
      <div className="jp-nbflow-muted">{stream}: empty</div>
    );
  }
  return (
    <div className="jp-nbflow-log">
      <div className="jp-nbflow-subhead">
        {stream}
        {log.truncated ? (
          <>
            {` (last ${LOG_TAIL} of ${log.lines} lines) `}
            <button
              className="jp-nbflow-link"
              onClick={() => void model.loadLog(taskId, stream, true)}
            >
              show all
            </button>
          </>
        ) : null}
        {log.loading ? ' …' : ''}
      </div>
      {log.error ? <div className="jp-nbflow-error">{log.error}</div> : null}
      <pre
        className={`jp-nbflow-pre${stream === 'stderr' ? ' jp-nbflow-stderr' : ''}`}
      >
        {log.text}
      </pre>
    </div>
  );
}
