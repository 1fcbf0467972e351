// A run's tags and note: chips in the history rows, and in the run view an editor (add tags,
// remove one with its chip's ×, edit the note) that posts to nbflow/api/runs/RUN/tags. Tags and
// notes come from users: they are rendered as React text only.

import * as React from 'react';

import { TagsRequest } from './model';
import { normalizeNote, parseTagInput } from './tags';

/** Tags as chips; with `onRemove`, each chip has a × that removes it. */
export function TagChips(props: {
  tags: string[] | undefined;
  onRemove?: (tag: string) => void;
  disabled?: boolean;
}): JSX.Element | null {
  const tags = props.tags ?? [];
  if (tags.length === 0) {
    return null;
  }
  return (
    <span className="jp-nbflow-tags">
      {tags.map(t => (
        <span key={t} className="jp-nbflow-tag" title={t}>
          <span className="jp-nbflow-tag-name">{t}</span>
          {props.onRemove ? (
            <button
              className="jp-nbflow-tag-remove"
              aria-label={`Remove the tag ${t}`}
              title={`Remove the tag ${t}`}
              disabled={props.disabled}
              onClick={e => {
                e.stopPropagation();
                props.onRemove!(t);
              }}
            >
              ×
            </button>
          ) : null}
        </span>
      ))}
    </span>
  );
}

export interface IRunTagsProps {
  tags: string[];
  note: string | null;
  /** A request is under way: the controls wait. */
  busy: boolean;
  /** The server's refusal of the last change, if any. */
  error: string | null;
  /** Send a change; resolves true when the server took it. */
  onUpdate: (request: TagsRequest) => Promise<boolean>;
}

/** The "tags" and "note" rows of the run view's field table, editable. */
export function RunTagsRows(props: IRunTagsProps): JSX.Element {
  const [text, setText] = React.useState('');
  const [editing, setEditing] = React.useState(false);
  const [draft, setDraft] = React.useState('');
  const parsed = parseTagInput(text, props.tags);
  const localError = text.trim() ? parsed.error : null;

  const add = async (): Promise<void> => {
    if (parsed.error || parsed.tags.length === 0) {
      return;
    }
    if (await props.onUpdate({ add: parsed.tags })) {
      setText('');
    }
  };
  const saveNote = async (): Promise<void> => {
    if (await props.onUpdate({ note: normalizeNote(draft) })) {
      setEditing(false);
    }
  };

  return (
    <>
      <tr>
        <th>tags</th>
        <td>
          <TagChips
            tags={props.tags}
            disabled={props.busy}
            onRemove={tag => void props.onUpdate({ remove: [tag] })}
          />
          <span className="jp-nbflow-tagadd">
            <input
              className="jp-nbflow-input"
              aria-label="New tag"
              placeholder="add a tag"
              value={text}
              disabled={props.busy}
              onChange={e => setText(e.currentTarget.value)}
              onKeyDown={e => {
                if (e.key === 'Enter') {
                  e.preventDefault();
                  void add();
                }
              }}
            />
            <button
              className="jp-nbflow-link"
              disabled={
                props.busy || !!parsed.error || parsed.tags.length === 0
              }
              onClick={() => void add()}
            >
              add
            </button>
          </span>
          {localError ? (
            <div className="jp-nbflow-error">{localError}</div>
          ) : null}
          {props.error ? (
            <div className="jp-nbflow-error">{props.error}</div>
          ) : null}
        </td>
      </tr>
      <tr>
        <th>note</th>
        <td>
          {editing ? (
            <div className="jp-nbflow-noteedit">
              <textarea
                className="jp-nbflow-input"
                aria-label="Note"
                rows={3}
                value={draft}
                disabled={props.busy}
                onChange={e => setDraft(e.currentTarget.value)}
              />
              <button
                className="jp-nbflow-link"
                disabled={props.busy}
                onClick={() => void saveNote()}
              >
                save
              </button>
              <button
                className="jp-nbflow-link"
                disabled={props.busy}
                onClick={() => setEditing(false)}
              >
                cancel
              </button>
            </div>
          ) : (
            <>
              {props.note ? (
                <span className="jp-nbflow-notetext">{props.note}</span>
              ) : (
                <span className="jp-nbflow-muted">none</span>
              )}{' '}
              <button
                className="jp-nbflow-link"
                aria-label="Edit the note"
                onClick={() => {
                  setDraft(props.note ?? '');
                  setEditing(true);
                }}
              >
                edit
              </button>
            </>
          )}
        </td>
      </tr>
    </>
  );
}
