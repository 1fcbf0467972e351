// What the sidebar shows, and keeping it fresh: the active notebook's runs, the selected run
// with its steps and tasks, the expanded task's logs, and artifact previews. Owns the live poll
// (@lumino/polling `Poll`): every `minInterval` second while a run is running and changing,
// doubling while nothing changes up to `maxBackoff`; standing by while the sidebar is hidden.

import { PathExt } from '@jupyterlab/coreutils';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { NbflowApi } from './api';
import { nextInterval, refreshDelay } from './backoff';
import { latestTasks } from './dag';
import { orderRuns } from './diffmodel';
import { ILineageRequest } from './lineagemodel';
import {
  ArtifactReply,
  RunDetail,
  RunListItem,
  StartRunReply,
  TagCount,
  TagsRequest,
  TaskJSON
} from './model';
import { SettingsHolder } from './settings';

/** Lines of a log shown at first; "show all" loads the whole log. */
export const LOG_TAIL = 200;
/** Runs of the history shown. */
export const RUNS_PAGE = 50;
/** How long after "Run flow" (or a step cell run) the sidebar polls fast for the new run. */
const EXPECT_MS = 60_000;

export type Stream = 'stdout' | 'stderr';

export interface LogState {
  text: string;
  lines: number;
  truncated: boolean;
  /** Whether the whole log was asked for. */
  all: boolean;
  loading: boolean;
  error: string | null;
}

export interface ArtifactState {
  reply: ArtifactReply | null;
  loading: boolean;
  error: string | null;
}

/** A view the sidebar asks to open in the main area (index.ts opens it). */
export type OpenRequest =
  | { kind: 'diff'; notebook: string; a: string; b: string }
  | ({ kind: 'lineage' } & ILineageRequest);

export class SidebarModel implements IDisposable {
  constructor(
    private readonly _api: NbflowApi,
    private readonly _settings: SettingsHolder
  ) {
    const { maxBackoff } = this._settings.current.polling;
    this._interval = maxBackoff;
    this._poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      frequency: {
        interval: maxBackoff * 1000,
        backoff: true,
        max: maxBackoff * 1000
      },
      name: 'nbflow:sidebar',
      standby: () => !this._visible || 'when-hidden'
    });
    this._settings.changed.connect(this._onSettings, this);
  }

  // -- state read by the views ---------------------------------------------------------------

  /** The active notebook's path from the server root, null without one. */
  get notebook(): string | null {
    return this._notebook;
  }
  /** Its flow's name (runs of this notebook are recorded under it). */
  get flow(): string | null {
    return this._notebook ? flowName(this._notebook) : null;
  }
  runs: RunListItem[] = [];
  /** The store's URL; null when the notebook's folder has none yet. */
  store: string | null = null;
  /** Whether the history has been read at least once for this notebook. */
  loaded = false;
  error: string | null = null;
  selectedRun: string | null = null;
  run: RunDetail | null = null;
  runError: string | null = null;
  selectedStep: string | null = null;
  expandedTask: number | null = null;
  /** A "Run flow" request is under way. */
  starting = false;
  /** Tags of the notebook's store, with their run counts (empty when the server has none). */
  tags: TagCount[] = [];
  /** The history shows only runs with this tag (null: all runs). */
  tagFilter: string | null = null;
  /** Why the last change of the selected run's tags or note failed. */
  tagsError: string | null = null;
  /** A change of the selected run's tags or note is under way. */
  savingTags = false;

  /** Runs ticked for comparison, in the order they were ticked. */
  get checked(): string[] {
    return [...this._checked.keys()];
  }
  /** Whether exactly two runs are ticked. */
  get canCompare(): boolean {
    return this._checked.size === 2;
  }
  /** The sidebar asks for a diff or lineage view. */
  get openRequested(): ISignal<this, OpenRequest> {
    return this._openRequested;
  }
  /** Seconds until the next poll, as last scheduled. */
  get interval(): number {
    return this._interval;
  }

  /** Whether any run in view is running. */
  get live(): boolean {
    return (
      this.runs.some(r => r.status === 'running') ||
      this.run?.status === 'running'
    );
  }

  /**
   * Tasks of the selected step in index order, the latest execution of an index first (an
   * interactive run keeps a task per execution of the cell).
   */
  get stepTasks(): TaskJSON[] {
    if (!this.run || !this.selectedStep) {
      return [];
    }
    return this.run.tasks
      .filter(t => t.step === this.selectedStep)
      .sort((a, b) => (a.index ?? 0) - (b.index ?? 0) || b.id - a.id);
  }

  log(taskId: number, stream: Stream): LogState | undefined {
    return this._logs.get(`${taskId}:${stream}`);
  }

  artifact(hash: string): ArtifactState | undefined {
    return this._artifacts.get(hash);
  }

  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  // -- actions -------------------------------------------------------------------------------

  /** Follow another notebook (null: none is active). */
  setNotebook(path: string | null): void {
    if (path === this._notebook) {
      return;
    }
    this._notebook = path;
    this.runs = [];
    this.store = null;
    this.loaded = false;
    this.error = null;
    this.tags = [];
    this.tagFilter = null;
    this._checked.clear();
    this._runsKey = '';
    this._clearRun();
    this._changed.emit();
    this.refresh(false);
  }

  /** Show only the runs tagged `tag` (null: all). */
  setTagFilter(tag: string | null): void {
    const value = tag || null;
    if (value === this.tagFilter) {
      return;
    }
    this.tagFilter = value;
    this.loaded = false;
    this._runsKey = '';
    this._changed.emit();
    this.refresh(false);
  }

  /** Tick or untick a run for comparison. */
  toggleChecked(run: RunListItem): void {
    if (this._checked.has(run.id)) {
      this._checked.delete(run.id);
    } else {
      this._checked.set(run.id, run);
    }
    this._changed.emit();
  }

  isChecked(id: string): boolean {
    return this._checked.has(id);
  }

  /** Open the diff of the two ticked runs: the older as A, the newer as B. */
  compare(): void {
    const notebook = this._notebook;
    if (!notebook || this._checked.size !== 2) {
      return;
    }
    const [x, y] = [...this._checked.values()];
    const [a, b] = orderRuns(x, y);
    this._openRequested.emit({ kind: 'diff', notebook, a: a.id, b: b.id });
  }

  /** Open the lineage of a task's output, in the selected run. */
  openLineage(task: TaskJSON, name: string): void {
    const notebook = this._notebook;
    const run = this.selectedRun;
    if (!notebook || !run) {
      return;
    }
    this._openRequested.emit({
      kind: 'lineage',
      notebook,
      run,
      step: task.step,
      name,
      index: task.index,
      task: task.id
    });
  }

  /**
   * Change the selected run's tags or note; true when the server took it. A refusal (a bad
   * tag) is kept in `tagsError`.
   */
  async updateTags(request: TagsRequest): Promise<boolean> {
    const notebook = this._notebook;
    const id = this.selectedRun;
    if (!notebook || !id) {
      return false;
    }
    this.savingTags = true;
    this.tagsError = null;
    this._changed.emit();
    try {
      const reply = await this._api.updateTags(notebook, id, request);
      if (this.run && this.run.id === id) {
        this.run = { ...this.run, tags: reply.tags, note: reply.note };
      }
      this.runs = this.runs.map(r =>
        r.id === id ? { ...r, tags: reply.tags, note: reply.note } : r
      );
      const checked = this._checked.get(id);
      if (checked) {
        this._checked.set(id, { ...checked, ...reply });
      }
      this.refresh(false);
      return true;
    } catch (e) {
      if (id === this.selectedRun) {
        this.tagsError = message(e);
      }
      return false;
    } finally {
      this.savingTags = false;
      this._changed.emit();
    }
  }

  /** Show a run (null: back to the list). */
  selectRun(id: string | null): void {
    if (id === this.selectedRun) {
      return;
    }
    this._clearRun();
    this.selectedRun = id;
    this._changed.emit();
    if (id) {
      void this._loadRun(id);
    }
  }

  /**
   * Show a step's tasks; its task opens at once when it has a single one (or a single latest
   * execution, in an interactive run), else its first failed task does.
   */
  selectStep(name: string | null): void {
    this.selectedStep = name;
    this.expandedTask = null;
    const tasks = latestTasks(this.stepTasks);
    const first =
      tasks.find(t => t.status === 'failed' || t.status === 'timed_out') ??
      (tasks.length === 1 ? tasks[0] : undefined);
    this._changed.emit();
    if (first) {
      this.expandTask(first.id);
    }
  }

  /** Open a task: load the tail of its logs. */
  expandTask(id: number | null): void {
    this.expandedTask = id;
    this._changed.emit();
    if (id !== null) {
      void this.loadLog(id, 'stdout');
      void this.loadLog(id, 'stderr');
    }
  }

  /** Load a task's log: the last LOG_TAIL lines, or all of it. */
  async loadLog(taskId: number, stream: Stream, all?: boolean): Promise<void> {
    const notebook = this._notebook;
    const run = this.selectedRun;
    if (!notebook || !run) {
      return;
    }
    const key = `${taskId}:${stream}`;
    const before = this._logs.get(key);
    const wantAll = all ?? before?.all ?? false;
    this._logs.set(key, {
      text: before?.text ?? '',
      lines: before?.lines ?? 0,
      truncated: before?.truncated ?? false,
      all: wantAll,
      loading: true,
      error: null
    });
    this._changed.emit();
    try {
      const reply = await this._api.logs(notebook, run, taskId, {
        stream,
        tail: wantAll ? 0 : LOG_TAIL
      });
      if (run !== this.selectedRun) {
        return;
      }
      this._logs.set(key, {
        text: reply.text,
        lines: reply.lines,
        truncated: reply.truncated,
        all: wantAll,
        loading: false,
        error: null
      });
    } catch (e) {
      this._logs.set(key, {
        ...this._logs.get(key)!,
        loading: false,
        error: message(e)
      });
    }
    this._changed.emit();
  }

  /** Load an artifact's description and preview (once). */
  async loadArtifact(hash: string): Promise<void> {
    const notebook = this._notebook;
    const known = this._artifacts.get(hash);
    if (!notebook || (known && (known.loading || known.reply))) {
      return;
    }
    this._artifacts.set(hash, { reply: null, loading: true, error: null });
    this._changed.emit();
    try {
      const reply = await this._api.artifact(notebook, hash);
      this._artifacts.set(hash, { reply, loading: false, error: null });
    } catch (e) {
      this._artifacts.set(hash, {
        reply: null,
        loading: false,
        error: message(e)
      });
    }
    this._changed.emit();
  }

  /**
   * Poll now, with the backoff reset; `expectActivity` keeps polling fast for a while even
   * though nothing runs yet (a run was just started, a step cell was just run).
   */
  refresh(expectActivity = false): void {
    if (expectActivity) {
      this._expectUntil = Date.now() + EXPECT_MS;
    }
    this._interval = 0;
    if (this._visible && this._notebook) {
      this._pollSoon();
    }
  }

  /** "Run flow": start `nbflow run` of the notebook on the server. */
  async startRun(): Promise<StartRunReply> {
    const notebook = this._notebook;
    if (!notebook) {
      throw new Error('nbflow: open a notebook first');
    }
    this.starting = true;
    this._changed.emit();
    try {
      const reply = await this._api.startRun(notebook);
      this.selectRun(null);
      this.refresh(true);
      return reply;
    } finally {
      this.starting = false;
      this._changed.emit();
    }
  }

  /** The sidebar was shown or hidden: poll only while it is visible. */
  setVisible(visible: boolean): void {
    if (visible === this._visible) {
      return;
    }
    this._visible = visible;
    if (visible) {
      this._interval = 0;
      if (this._notebook) {
        this._pollSoon();
      }
    } else {
      void this._poll.stop();
    }
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._poll.dispose();
    Signal.clearData(this);
  }

  // -- polling -------------------------------------------------------------------------------

  /** Poll as soon as allowed: never two polls within the minimum interval. */
  private _pollSoon(): void {
    const wait = refreshDelay(
      this._lastPoll,
      Date.now(),
      this._settings.current.polling.minInterval
    );
    void this._poll.schedule({ interval: wait, phase: 'refreshed' });
  }

  private async _tick(): Promise<void> {
    const notebook = this._notebook;
    if (!notebook) {
      return;
    }
    this._lastPoll = Date.now();
    let changed = false;
    try {
      const tag = this.tagFilter;
      const [reply, tags] = await Promise.all([
        this._api.runs(notebook, {
          flow: flowName(notebook),
          tag: tag ?? undefined,
          limit: RUNS_PAGE
        }),
        // A server without tags answers 404: the history works without them.
        this._api.tags(notebook).catch(() => null)
      ]);
      if (notebook !== this._notebook || tag !== this.tagFilter) {
        return;
      }
      const tagList = tags?.tags ?? [];
      if (JSON.stringify(tagList) !== JSON.stringify(this.tags)) {
        this.tags = tagList;
        this._changed.emit();
      }
      const key = JSON.stringify(reply);
      if (key !== this._runsKey || !this.loaded || this.error) {
        changed = key !== this._runsKey;
        this._runsKey = key;
        this.runs = reply.runs;
        this.store = reply.store;
        this.loaded = true;
        this.error = null;
        this._changed.emit();
      }
      const id = this.selectedRun;
      if (id && this._needsDetail(id, changed)) {
        changed = (await this._loadRun(id)) || changed;
      }
    } catch (e) {
      if (notebook === this._notebook) {
        this.error = message(e);
        this._changed.emit();
      }
      this._schedule(false);
      throw e; // the poll backs off on its own after a failure
    }
    if (changed && this.live) {
      this._expectUntil = 0;
    }
    this._schedule(changed);
  }

  /** Set the interval of the next poll. */
  private _schedule(changed: boolean): void {
    const { minInterval, maxBackoff } = this._settings.current.polling;
    const active = this.live || Date.now() < this._expectUntil;
    this._interval = active
      ? nextInterval(this._interval, changed, minInterval, maxBackoff)
      : maxBackoff;
    this._poll.frequency = {
      interval: this._interval * 1000,
      backoff: true,
      max: maxBackoff * 1000
    };
  }

  /** Whether the selected run has to be read again. */
  private _needsDetail(id: string, listChanged: boolean): boolean {
    if (!this.run || this.run.id !== id) {
      return true;
    }
    if (this.run.status === 'running') {
      return true;
    }
    const row = this.runs.find(r => r.id === id);
    return listChanged && !!row && row.status !== this.run.status;
  }

  /** Read a run; true if it changed. Reloads the open task's logs when its task changed. */
  private async _loadRun(id: string): Promise<boolean> {
    const notebook = this._notebook;
    if (!notebook) {
      return false;
    }
    let detail: RunDetail;
    try {
      detail = await this._api.run(notebook, id);
    } catch (e) {
      if (id === this.selectedRun) {
        this.runError = message(e);
        this._changed.emit();
      }
      return false;
    }
    if (id !== this.selectedRun || notebook !== this._notebook) {
      return false;
    }
    const key = JSON.stringify(detail);
    if (key === this._runKey) {
      return false;
    }
    const before = this.run;
    this._runKey = key;
    this.run = detail;
    this.runError = null;
    this._changed.emit();
    const open = this.expandedTask;
    if (open !== null) {
      const was = before?.tasks.find(t => t.id === open);
      const now = detail.tasks.find(t => t.id === open);
      if (now && JSON.stringify(was) !== JSON.stringify(now)) {
        void this.loadLog(open, 'stdout');
        void this.loadLog(open, 'stderr');
      }
    }
    return before !== null;
  }

  private _clearRun(): void {
    this.selectedRun = null;
    this.run = null;
    this.runError = null;
    this._runKey = '';
    this.selectedStep = null;
    this.expandedTask = null;
    this.tagsError = null;
    this._logs.clear();
  }

  private _onSettings(): void {
    this.refresh(false);
  }

  private _notebook: string | null = null;
  private _visible = false;
  private _interval: number;
  private _expectUntil = 0;
  private _lastPoll = 0;
  private _runsKey = '';
  private _runKey = '';
  private _logs = new Map<string, LogState>();
  private _artifacts = new Map<string, ArtifactState>();
  private _checked = new Map<string, RunListItem>();
  private _openRequested = new Signal<this, OpenRequest>(this);
  private _poll: Poll;
  private _changed = new Signal<this, void>(this);
  private _isDisposed = false;
}

/** A notebook's flow name: its file name without the extension (as `nbflow run` names it). */
export function flowName(path: string): string {
  const base = PathExt.basename(path);
  const ext = PathExt.extname(base);
  return ext ? base.slice(0, -ext.length) : base;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
