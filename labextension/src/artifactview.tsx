// A task's outputs and their previews. HTML previews are shown only after JupyterLab's sanitizer
// has cleaned them; text previews are React text (never parsed as HTML); images are base64 PNG
// data URLs.

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import * as React from 'react';

import { formatBytes } from './format';
import { ArtifactRefJSON, PreviewJSON } from './model';
import { ArtifactState } from './sidebarmodel';

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

export interface IPreviewProps {
  preview: PreviewJSON;
  sanitizer: IRenderMime.ISanitizer;
}

/** One preview, by kind. */
export function Preview({ preview, sanitizer }: IPreviewProps): JSX.Element {
  switch (preview.kind) {
    case 'html': {
      const clean = sanitizer.sanitize(preview.html);
      return (
        <div className="jp-nbflow-preview jp-nbflow-preview-html">
          {preview.shape && preview.shape.length > 0 ? (
            <div className="jp-nbflow-muted">
              shape {preview.shape.join(' × ')}
            </div>
          ) : null}
          <div
            className="jp-RenderedHTMLCommon"
            // Sanitized by JupyterLab's ISanitizer just above.
            dangerouslySetInnerHTML={{ __html: clean }}
          />
        </div>
      );
    }
    case 'image':
      if (preview.mimetype !== 'image/png' || !BASE64.test(preview.data)) {
        return (
          <div className="jp-nbflow-muted">(an image that cannot be shown)</div>
        );
      }
      return (
        <div className="jp-nbflow-preview">
          <img
            alt="artifact preview"
            src={`data:image/png;base64,${preview.data}`}
          />
        </div>
      );
    case 'text':
    default:
      return (
        <pre className="jp-nbflow-preview jp-nbflow-pre">
          {'text' in preview ? preview.text : JSON.stringify(preview)}
        </pre>
      );
  }
}

export interface IOutputsProps {
  outputs: Record<string, ArtifactRefJSON>;
  state: (hash: string) => ArtifactState | undefined;
  onPreview: (hash: string) => void;
  /** Open the lineage of an output (by its name); without it, no "lineage" button. */
  onLineage?: (name: string) => void;
  sanitizer: IRenderMime.ISanitizer;
}

/** A task's outputs: name, type, size, and a preview on demand. */
export function Outputs(props: IOutputsProps): JSX.Element {
  const names = Object.keys(props.outputs).sort();
  const [open, setOpen] = React.useState<Set<string>>(new Set());
  if (names.length === 0) {
    return <div className="jp-nbflow-muted">no outputs</div>;
  }
  const toggle = (hash: string): void => {
    const next = new Set(open);
    if (next.has(hash)) {
      next.delete(hash);
    } else {
      next.add(hash);
      props.onPreview(hash);
    }
    setOpen(next);
  };
  return (
    <table className="jp-nbflow-outputs">
      <tbody>
        {names.map(name => {
          const ref = props.outputs[name];
          const st = props.state(ref.hash);
          const shown = open.has(ref.hash);
          return (
            <React.Fragment key={name}>
              <tr>
                <td className="jp-nbflow-mono">{name}</td>
                <td className="jp-nbflow-muted" title={ref.type}>
                  {shortType(ref.type)}
                </td>
                <td className="jp-nbflow-num">{formatBytes(ref.size)}</td>
                <td>
                  <button
                    className="jp-nbflow-link"
                    onClick={() => toggle(ref.hash)}
                    title={`artifact ${ref.hash}`}
                  >
                    {shown ? 'hide' : 'preview'}
                  </button>
                  {props.onLineage ? (
                    <button
                      className="jp-nbflow-link jp-nbflow-lineage-button"
                      onClick={() => props.onLineage!(name)}
                      title="How it was made: this task and every task upstream"
                    >
                      Lineage
                    </button>
                  ) : null}
                </td>
              </tr>
              {shown ? (
                <tr>
                  <td colSpan={4}>
                    {st?.loading ? (
                      <div className="jp-nbflow-muted">loading…</div>
                    ) : st?.error ? (
                      <div className="jp-nbflow-error">{st.error}</div>
                    ) : st?.reply?.preview ? (
                      <Preview
                        preview={st.reply.preview}
                        sanitizer={props.sanitizer}
                      />
                    ) : st?.reply ? (
                      <div className="jp-nbflow-muted">
                        too large to preview ({formatBytes(st.reply.size)})
                      </div>
                    ) : null}
                  </td>
                </tr>
              ) : null}
            </React.Fragment>
          );
        })}
      </tbody>
    </table>
  );
}

/** "pandas.core.frame.DataFrame" -> "DataFrame". */
function shortType(type: string): string {
  const i = type.lastIndexOf('.');
  return i >= 0 ? type.slice(i + 1) : type;
}
