// An artifact's lineage, in a main-area tab: the run's parameters, then the task that produced
// the artifact and each task upstream of it: status (and where a cache hit came from), its code,
// its by-value inputs with their reprs, the data files it read, its inputs and the tasks they
// came from (click one to scroll to it), and its environment's packages. All of it React text:
// code and reprs come from users.

import * as React from 'react';

import { shortType } from './diffmodel';
import { formatBytes, shortHash } from './format';
import {
  artifactHeadline,
  ILineageTask,
  lineageTasks,
  paramList
} from './lineagemodel';
import { LineageReply } from './model';

export function LineageView({ reply }: { reply: LineageReply }): JSX.Element {
  const tasks = lineageTasks(reply);
  const params = paramList(reply.params);
  const root = React.useRef<HTMLDivElement>(null);
  const [flash, setFlash] = React.useState<number | null>(null);
  const goTo = (id: number): void => {
    const el = root.current?.querySelector(`[data-task="${id}"]`);
    el?.scrollIntoView({ block: 'start', behavior: 'smooth' });
    setFlash(id);
  };
  const a = reply.artifact;
  return (
    <div className="jp-nbflow-lineage" ref={root}>
      <div className="jp-nbflow-lineage-artifact">
        {artifactHeadline(reply)}
        <div className="jp-nbflow-muted">
          {shortType(a.type)} · {formatBytes(a.size)} ·{' '}
          <span className="jp-nbflow-mono" title={a.hash}>
            {shortHash(a.hash)}
          </span>
        </div>
      </div>

      <div className="jp-nbflow-subhead">parameters of the run</div>
      {params.length ? (
        <table className="jp-nbflow-fields jp-nbflow-lineage-params">
          <tbody>
            {params.map(p => (
              <tr key={p.name}>
                <th className="jp-nbflow-mono">{p.name}</th>
                <td className="jp-nbflow-mono">{p.value}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <div className="jp-nbflow-muted">none</div>
      )}

      <div className="jp-nbflow-subhead">
        tasks: the producing task, then upstream
      </div>
      {tasks.map(t => (
        <LineageTask
          key={t.id}
          task={t}
          otherRun={t.run !== a.run}
          flash={flash === t.id}
          onGoTo={goTo}
        />
      ))}

      {reply.files?.length ? (
        <>
          <div className="jp-nbflow-subhead">all data files read</div>
          <FileTable
            files={reply.files.map(f => ({
              path: f.path,
              size: formatBytes(f.size),
              hash: shortHash(f.hash),
              fullHash: f.hash,
              task: tasks.find(t => t.id === f.task)?.label ?? `task ${f.task}`
            }))}
          />
        </>
      ) : null}
    </div>
  );
}

function LineageTask(props: {
  task: ILineageTask;
  otherRun: boolean;
  flash: boolean;
  onGoTo: (id: number) => void;
}): JSX.Element {
  const { task: t } = props;
  return (
    <section
      className={`jp-nbflow-lineage-task${t.root ? ' jp-nbflow-lineage-root' : ''}${
        props.flash ? ' jp-mod-selected' : ''
      }`}
      data-task={t.id}
    >
      <div className="jp-nbflow-lineage-head">
        <span className={`jp-nbflow-dot jp-nbflow-state-${t.status}`} />
        <span className="jp-nbflow-mono jp-nbflow-lineage-label">
          {t.label}
        </span>
        <span className="jp-nbflow-muted jp-nbflow-aside">
          {t.status.replace('_', ' ')}
          {t.root
            ? ' · produced the artifact'
            : isFinite(t.depth)
              ? ` · ${t.depth} step${t.depth === 1 ? '' : 's'} upstream`
              : ''}
          {` · task ${t.id}`}
          {props.otherRun ? ` · run ${t.run}` : ''}
        </span>
      </div>
      {t.cached ? (
        <div className="jp-nbflow-note jp-nbflow-lineage-cached">
          {t.cached}
        </div>
      ) : null}
      {t.item !== null ? (
        <div>
          <span className="jp-nbflow-muted">item </span>
          <span className="jp-nbflow-mono">{t.item}</span>
        </div>
      ) : null}
      <details className="jp-nbflow-details" open={t.root}>
        <summary>code</summary>
        <pre className="jp-nbflow-pre jp-nbflow-lineage-code">{t.code}</pre>
      </details>

      {t.values.length ? (
        <>
          <div className="jp-nbflow-subhead">values and parameters</div>
          <table className="jp-nbflow-fields jp-nbflow-lineage-values">
            <tbody>
              {t.values.map(v => (
                <tr key={v.name} title={v.hash}>
                  <th className="jp-nbflow-mono">
                    {v.name}
                    {v.parameter ? (
                      <span className="jp-nbflow-param-mark"> parameter</span>
                    ) : null}
                  </th>
                  <td className="jp-nbflow-mono">{v.text}</td>
                  <td className="jp-nbflow-muted jp-nbflow-num">{v.size}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      ) : null}

      {t.modules.length ? (
        <div>
          <span className="jp-nbflow-muted">modules </span>
          <span className="jp-nbflow-mono">{t.modules.join(', ')}</span>
        </div>
      ) : null}

      {t.inputs.length ? (
        <>
          <div className="jp-nbflow-subhead">inputs from other steps</div>
          <ul className="jp-nbflow-lineage-inputs">
            {t.inputs.map(i => (
              <li key={i.name}>
                <span className="jp-nbflow-mono">{i.name}</span>{' '}
                <span className="jp-nbflow-muted">{i.text}</span> ← from{' '}
                {i.from.length === 0 ? (
                  <span className="jp-nbflow-muted">—</span>
                ) : (
                  i.from.map((f, n) => (
                    <React.Fragment key={f.id}>
                      {n > 0 ? ', ' : ''}
                      {f.label !== null ? (
                        <button
                          className="jp-nbflow-link jp-nbflow-mono"
                          onClick={() => props.onGoTo(f.id)}
                          title={`Scroll to task ${f.id}`}
                        >
                          {f.label}
                        </button>
                      ) : (
                        <span className="jp-nbflow-mono">task {f.id}</span>
                      )}
                    </React.Fragment>
                  ))
                )}
              </li>
            ))}
          </ul>
        </>
      ) : null}

      {t.files.length ? (
        <>
          <div className="jp-nbflow-subhead">data files read</div>
          <FileTable files={t.files} />
        </>
      ) : null}

      <details className="jp-nbflow-details">
        <summary>
          environment: Python {t.python ?? '?'}, {t.packages.length} package
          {t.packages.length === 1 ? '' : 's'}
          {t.worker ? `, worker ${t.worker}` : ''}
        </summary>
        <ul className="jp-nbflow-lineage-packages jp-nbflow-mono">
          {t.packages.map(p => (
            <li key={p}>{p}</li>
          ))}
          {t.sources.map(s => (
            <li key={`src:${s.module}`} title={s.hash}>
              {s.module} (source {shortHash(s.hash)})
            </li>
          ))}
        </ul>
      </details>
    </section>
  );
}

function FileTable(props: {
  files: {
    path: string;
    size: string;
    hash: string;
    fullHash: string;
    task?: string;
  }[];
}): JSX.Element {
  return (
    <table className="jp-nbflow-outputs jp-nbflow-lineage-files">
      <tbody>
        {props.files.map(f => (
          <tr key={`${f.path}:${f.fullHash}:${f.task ?? ''}`}>
            <td className="jp-nbflow-mono">{f.path}</td>
            <td className="jp-nbflow-num">{f.size}</td>
            <td className="jp-nbflow-mono" title={f.fullHash}>
              {f.hash}
            </td>
            {f.task !== undefined ? (
              <td className="jp-nbflow-mono jp-nbflow-muted">{f.task}</td>
            ) : null}
          </tr>
        ))}
      </tbody>
    </table>
  );
}
