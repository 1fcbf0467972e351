// The comparison of two runs, in a main-area tab: which runs (A the older, B the newer), the
// parameters and packages that changed, and each step that changed: its code's unified diff,
// changed by-value inputs, packages and data files, and its outputs that differ with the
// comparer's summary. Unchanged steps fold into one line. Everything is React text: code,
// reprs, tags and notes come from users.

import * as React from 'react';

import {
  diffHeadline,
  diffLines,
  fileRows,
  IChangeRow,
  inputRows,
  optionRows,
  outputRows,
  packageRows,
  paramRows,
  sameStepsLine,
  stepItems
} from './diffmodel';
import { formatStart } from './format';
import { DiffReply, RunSummary, StepDiffJSON } from './model';
import { TagChips } from './tagsview';

export function DiffView({ reply }: { reply: DiffReply }): JSX.Element {
  const params = paramRows(reply.params);
  const env = reply.environment ?? {
    python: null,
    nbflow: null,
    packages: []
  };
  const versions: IChangeRow[] = [];
  for (const [name, pair] of [
    ['python', env.python],
    ['nbflow', env.nbflow]
  ] as const) {
    if (pair && pair.a !== pair.b) {
      versions.push({
        name,
        status: 'changed',
        a: pair.a ?? '—',
        b: pair.b ?? '—'
      });
    }
  }
  const packages = [...versions, ...packageRows(env.packages ?? [])];
  return (
    <div className="jp-nbflow-diff">
      <table className="jp-nbflow-fields jp-nbflow-diff-runs">
        <tbody>
          <RunSide label="A" run={reply.a} />
          <RunSide label="B" run={reply.b} />
        </tbody>
      </table>
      <div className="jp-nbflow-diff-headline">{diffHeadline(reply)}</div>

      <div className="jp-nbflow-subhead">parameters</div>
      {params.length ? (
        <ChangeTable rows={params} section="params" />
      ) : (
        <div className="jp-nbflow-muted">the same</div>
      )}

      <div className="jp-nbflow-subhead">environment</div>
      {packages.length ? (
        <ChangeTable rows={packages} section="packages" />
      ) : (
        <div className="jp-nbflow-muted">the same versions</div>
      )}

      <div className="jp-nbflow-subhead">steps</div>
      {stepItems(reply.steps ?? []).map(item =>
        item.kind === 'same' ? (
          <div
            key={`same:${item.names[0]}`}
            className="jp-nbflow-diff-same jp-nbflow-muted"
          >
            {sameStepsLine(item.names)}
          </div>
        ) : (
          <StepDiff key={item.step.name} step={item.step} />
        )
      )}
    </div>
  );
}

function RunSide(props: { label: string; run: RunSummary }): JSX.Element {
  const { run } = props;
  return (
    <tr>
      <th>{props.label}</th>
      <td>
        <span className="jp-nbflow-mono">{run.id}</span>{' '}
        <span className={`jp-nbflow-badge jp-nbflow-state-${run.status}`}>
          {run.status}
        </span>{' '}
        <span className="jp-nbflow-muted">{formatStart(run.started_at)}</span>{' '}
        <TagChips tags={run.tags} />
        {run.note ? <div className="jp-nbflow-notetext">{run.note}</div> : null}
      </td>
    </tr>
  );
}

/** A two-sided table: what, A, B, each row coloured by how it changed. */
export function ChangeTable(props: {
  rows: IChangeRow[];
  section: string;
}): JSX.Element {
  return (
    <table className={`jp-nbflow-difftable jp-nbflow-diff-${props.section}`}>
      <thead>
        <tr>
          <th />
          <th>A</th>
          <th>B</th>
        </tr>
      </thead>
      <tbody>
        {props.rows.map(r => (
          <tr
            key={r.name}
            className={`jp-nbflow-change-${r.status}`}
            title={r.title || undefined}
          >
            <td className="jp-nbflow-mono">{r.name}</td>
            <td className="jp-nbflow-mono jp-nbflow-diff-a">{r.a}</td>
            <td className="jp-nbflow-mono jp-nbflow-diff-b">{r.b}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** A unified diff, one element per line, classified for colour. */
export function CodeDiff({ diff }: { diff: string }): JSX.Element {
  return (
    <pre className="jp-nbflow-pre jp-nbflow-codediff">
      {diffLines(diff).map((line, i) => (
        <div
          key={i}
          className={`jp-nbflow-diffline jp-nbflow-diffline-${line.kind}`}
        >
          {line.text === '' ? ' ' : line.text}
        </div>
      ))}
    </pre>
  );
}

function StepDiff({ step }: { step: StepDiffJSON }): JSX.Element {
  const options = optionRows(step);
  const inputs = inputRows(step.inputs ?? []);
  const packages = packageRows(step.packages ?? []);
  const files = fileRows(step.files ?? []);
  const outputs = outputRows(step.outputs ?? []);
  const code = step.code ?? { a: null, b: null, diff: '' };
  const onlyCode =
    !code.diff && step.status !== 'changed' ? (code.b ?? code.a) : null;
  return (
    <div className="jp-nbflow-diffstep" data-step={step.name}>
      <div className="jp-nbflow-diffstep-head">
        <span className="jp-nbflow-mono">{step.name}</span>
        <span className={`jp-nbflow-change jp-nbflow-change-${step.status}`}>
          {step.status}
        </span>
        {step.tasks ? (
          <span className="jp-nbflow-muted jp-nbflow-aside">
            tasks {step.tasks.a} → {step.tasks.b}
          </span>
        ) : null}
      </div>
      {code.diff ? (
        <>
          <div className="jp-nbflow-subhead">code</div>
          <CodeDiff diff={code.diff} />
        </>
      ) : onlyCode ? (
        <>
          <div className="jp-nbflow-subhead">code</div>
          <pre className="jp-nbflow-pre">{onlyCode}</pre>
        </>
      ) : null}
      {options.length ? (
        <>
          <div className="jp-nbflow-subhead">options</div>
          <ChangeTable rows={options} section="options" />
        </>
      ) : null}
      {inputs.length ? (
        <>
          <div className="jp-nbflow-subhead">inputs by value</div>
          <ChangeTable rows={inputs} section="inputs" />
        </>
      ) : null}
      {packages.length ? (
        <>
          <div className="jp-nbflow-subhead">packages</div>
          <ChangeTable rows={packages} section="packages" />
        </>
      ) : null}
      {files.length ? (
        <>
          <div className="jp-nbflow-subhead">data files</div>
          <ChangeTable rows={files} section="files" />
        </>
      ) : null}
      {outputs.length ? (
        <>
          <div className="jp-nbflow-subhead">outputs that differ</div>
          <ul className="jp-nbflow-diff-outputs">
            {outputs.map(o => (
              <li key={o.label} className={`jp-nbflow-change-${o.status}`}>
                <span className="jp-nbflow-mono">{o.label}</span>{' '}
                <span className="jp-nbflow-muted">
                  {o.a} → {o.b}
                </span>
                {o.text !== null ? (
                  <div className="jp-nbflow-summary">{o.text}</div>
                ) : o.note ? (
                  <div className="jp-nbflow-muted">{o.note}</div>
                ) : null}
                {o.details.length ? (
                  <ul className="jp-nbflow-summary-details">
                    {o.details.map((d, i) => (
                      <li key={i} className="jp-nbflow-mono">
                        {d}
                      </li>
                    ))}
                  </ul>
                ) : null}
              </li>
            ))}
          </ul>
        </>
      ) : null}
    </div>
  );
}
