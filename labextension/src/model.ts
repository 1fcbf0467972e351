// The JSON wire model of nbflow's REST API, field for field as the server sends it:
// `run_list_item` and `Run.to_json` / `Task.to_json` in nbflow/client.py, and the replies built in
// nbflow/server/handlers.py. Types only; formatting lives in format.ts.

/** A task's state (nbflow.model.TaskStatus). */
export type TaskStatus =
  | 'pending'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'timed_out'
  | 'cached'
  | 'cancelled';

/** A run's state (nbflow.model.RunStatus). */
export type RunStatus = 'running' | 'succeeded' | 'failed' | 'interrupted';

/** How a run was made: `nbflow run`, `nbflow resume`, or a kernel's step cells. */
export type RunKind = 'headless' | 'resume' | 'interactive';

/** Tasks per status; statuses without tasks are absent. */
export type TaskCounts = Partial<Record<TaskStatus, number>>;

/** A `%%resources` request as stored: memory in bytes. */
export interface ResourcesJSON {
  memory?: number;
  cpus?: number;
  gpus?: number;
}

/** `Run.summary_json()`: the fields every view of a run has. */
export interface RunSummary {
  id: string;
  flow: string;
  status: RunStatus;
  kind: RunKind;
  started_at: string | null;
  finished_at: string | null;
  params: Record<string, unknown>;
  resumed_from: string | null;
  notebook_path: string | null;
  /** The run's tags (absent from servers older than tags). */
  tags?: string[];
  /** A free-text note about the run, null without one. */
  note?: string | null;
}

/** One row of the run history (`run_list_item`). */
export interface RunListItem extends RunSummary {
  /** Seconds, null while the run has not finished. */
  duration: number | null;
  counts: TaskCounts;
}

/** GET nbflow/api/runs */
export interface RunsReply {
  runs: RunListItem[];
  offset: number;
  limit: number;
  /** The store's URL, null when the notebook's folder has no store yet. */
  store: string | null;
}

/** GET nbflow/api/flows */
export interface FlowsReply {
  flows: string[];
  store: string | null;
}

/** POST nbflow/api/runs (202): the `nbflow run` process that was started. */
export interface StartRunReply {
  pid: number;
  notebook: string;
  /** The file (next to the notebook) that the process writes its output to. */
  log: string;
}

/** `StepOptions.to_json()`: everything a step cell's header lines say. */
export interface StepOptionsJSON {
  name: string;
  foreach: { var: string; expr: string } | null;
  retry: number;
  timeout: number | null;
  catch: boolean;
  force: boolean;
  resources: ResourcesJSON;
}

/** A step of a run. */
export interface StepJSON {
  name: string;
  /** Headless runs: the cell's 1-based position in the notebook; interactive: its execution count. */
  cell: number | null;
  inputs: string[];
  outputs: string[];
  upstream: string[];
  options: StepOptionsJSON;
}

/** `ArtifactRef.to_json()` */
export interface ArtifactRefJSON {
  hash: string;
  size: number;
  type: string;
}

/** How one input reached a task (`_describe_inputs` in nbflow/dispatch.py). */
export type TaskInputJSON =
  | ({ kind: 'artifact' } & ArtifactRefJSON)
  | { kind: 'gather'; items: ArtifactRefJSON[] }
  | { kind: 'value'; hash: string; size: number }
  | { kind: 'module'; module: string };

/** `DataFile.to_json()`: a data file a task read. */
export interface DataFileJSON {
  path: string;
  size: number;
  mtime_ns: number;
  hash: string;
}

/** `Task.to_json()`: one execution of a step (one per foreach item). */
export interface TaskJSON {
  id: number;
  step: string;
  index: number | null;
  item: string | null;
  status: TaskStatus;
  attempts: number;
  started_at: string | null;
  finished_at: string | null;
  duration: number | null;
  worker: string | null;
  resources: ResourcesJSON;
  cache_key: string | null;
  cached_from: number | null;
  inputs: Record<string, TaskInputJSON>;
  /** Output name -> artifact hash. */
  outputs: Record<string, string>;
  output_details: Record<string, ArtifactRefJSON>;
  files: DataFileJSON[];
  error: string | null;
  error_type: string | null;
}

/** The run's graph, added by the server: step names, and [upstream, downstream] pairs. */
export interface DagJSON {
  nodes: string[];
  edges: [string, string][];
}

/** `ClusterReply.cluster`: what `Executor.describe()` recorded. Only `kind` is always there. */
export interface ClusterJSON {
  kind: string;
  scheduler?: string | null;
  dashboard?: string | null;
  workers?: number;
  threads?: number;
  /** Bytes, summed over the workers' memory limits. */
  memory?: number;
  /** What one task can ask for with `%%resources`. */
  largest_worker?: {
    address: string;
    memory: number;
    cpus: number;
    gpus: number;
  } | null;
  /**
   * Whether a request bigger than every worker starts a worker of its size ("scale this cell"),
   * through which manager, and up to what (null limits: the manager does not say); null when the
   * cluster cannot grow (a bare scheduler address, dask-gateway).
   */
  scaling?: {
    manager: string;
    limits: { memory?: number; cpus?: number; gpus?: number } | null;
  } | null;
}

/** GET nbflow/api/runs/RUN: `Run.to_json()` plus the DAG. */
export interface RunDetail extends RunSummary {
  error: string | null;
  environment: Record<string, unknown>;
  cluster: ClusterJSON | null;
  store: string | null;
  /** The metadata database's URL, password hidden (null for runs recorded before it was kept). */
  db: string | null;
  counts: TaskCounts;
  steps: StepJSON[];
  tasks: TaskJSON[];
  dag: DagJSON;
}

/** GET nbflow/api/runs/RUN/tasks/TASK/logs */
export interface LogsReply {
  run: string;
  task: number;
  stream: 'stdout' | 'stderr';
  text: string;
  /** Lines in the whole log. */
  lines: number;
  /** Whether `text` is only the last `tail` lines. */
  truncated: boolean;
}

/** An artifact preview (nbflow/server/preview.py). */
export type PreviewJSON =
  | { kind: 'html'; html: string; shape?: number[] }
  | { kind: 'text'; text: string }
  | { kind: 'image'; mimetype: string; data: string };

/** GET nbflow/api/artifacts/HASH */
export interface ArtifactReply {
  hash: string;
  name: string;
  type: string;
  size: number;
  run: string;
  step: string;
  /** Null when the artifact is too large to load for a preview. */
  preview: PreviewJSON | null;
}

/** GET nbflow/api/cluster: the cluster of the newest live run of the notebook's store. */
export interface ClusterReply {
  cluster: ClusterJSON | null;
  /** The id of that run, if any is running. */
  run: string | null;
  /** `nbflow.cluster.address` from the server's configuration. */
  address: string | null;
}

/** POST nbflow/api/export: the notebook, and a schedule when `target` is given. */
export interface ExportRequest {
  notebook: string;
  output?: string;
  target?: string;
  cron?: string;
  timezone?: string;
  image?: string;
  store?: string;
  db?: string;
  cluster?: string;
}

/** The files the export wrote, relative to the server root. */
export interface ExportReply {
  files: string[];
}

// -- tags, notes, run comparison, lineage --------------------------------------------------------

/** A tag and how many runs carry it. */
export interface TagCount {
  name: string;
  runs: number;
}

/** GET nbflow/api/tags */
export interface TagsReply {
  tags: TagCount[];
}

/** POST nbflow/api/runs/RUN/tags: tags to add and remove, and the new note (null: none). */
export interface TagsRequest {
  add?: string[];
  remove?: string[];
  note?: string | null;
}

/** The run's tags and note after a TagsRequest. */
export interface TagsUpdateReply {
  tags: string[];
  note: string | null;
}

/** What changed between two runs: present in one only, or in both with other values. */
export type ChangeStatus = 'changed' | 'added' | 'removed';

/** A parameter of run A against run B (`undefined` never: absent sides are null). */
export interface ParamDiffJSON {
  name: string;
  a: unknown;
  b: unknown;
  status: ChangeStatus;
}

/** A value in run A and in run B (null where absent). */
export interface VersionPairJSON {
  a: string | null;
  b: string | null;
}

/** A distribution's version in run A and B (null: not installed there). */
export interface PackageDiffJSON extends VersionPairJSON {
  name: string;
}

/** A by-value input (or an imported module) as one side shipped it. */
export interface InputSideJSON {
  hash: string;
  repr: string | null;
  type: string | null;
}

export interface InputDiffJSON {
  name: string;
  kind: 'value' | 'module';
  a: InputSideJSON | null;
  b: InputSideJSON | null;
}

/** A data file read by a step, in A and in B. */
export interface FileDiffJSON {
  path: string;
  a: { size: number; hash: string } | null;
  b: { size: number; hash: string } | null;
}

/**
 * How two values of an output differ, from the server's comparers: `text` is one line,
 * `details` more lines; other fields depend on `kind` (e.g. a frame's shapes).
 */
export interface SummaryJSON {
  kind: string;
  same: boolean;
  text: string;
  details: string[];
  [field: string]: unknown;
}

/** An output that differs between A and B. */
export interface OutputDiffJSON {
  name: string;
  /** The foreach item's index, null for a step without --foreach. */
  index: number | null;
  a: ArtifactRefJSON | null;
  b: ArtifactRefJSON | null;
  same: boolean;
  summary: SummaryJSON | null;
  /** Why there is no summary, e.g. "too large to load (2.1 GiB)". */
  note: string | null;
}

/** A step in A against B. */
export interface StepDiffJSON {
  name: string;
  status: 'same' | ChangeStatus;
  /** The cell's code in A and B; `diff` is their unified diff, "" when the same. */
  code: { a: string | null; b: string | null; diff: string };
  inputs: InputDiffJSON[];
  packages: PackageDiffJSON[];
  files: FileDiffJSON[];
  /** Only the outputs that differ. */
  outputs: OutputDiffJSON[];
  /** The step's header options in A and B when they differ, else null. */
  options?: { a: StepOptionsJSON | null; b: StepOptionsJSON | null } | null;
  /** Tasks of the step in each run. */
  tasks: { a: number; b: number };
}

/** GET nbflow/api/diff?a=RUN_A&b=RUN_B */
export interface DiffReply {
  a: RunSummary;
  b: RunSummary;
  params: ParamDiffJSON[];
  environment: {
    python: VersionPairJSON | null;
    nbflow: VersionPairJSON | null;
    packages: PackageDiffJSON[];
  };
  steps: StepDiffJSON[];
  counts: { steps_changed: number; outputs_changed: number };
}

/** A value a task received by value (a parameter, or a plain cell's name). */
export interface LineageValueJSON {
  name: string;
  hash: string;
  size: number;
  type: string | null;
  /** A short repr of the value, null when none was recorded. */
  repr: string | null;
  /** Whether it is a name of the cell tagged `parameters`. */
  parameter: boolean;
}

/** One task of an artifact's lineage. */
export interface LineageTaskJSON {
  id: number;
  run: string;
  step: string;
  index: number | null;
  item: string | null;
  status: TaskStatus | string;
  /** The run and task its outputs were taken from, when a cache hit. */
  cached_from: { run: string | null; task: number } | null;
  code: string;
  options: StepOptionsJSON;
  worker: string | null;
  started_at: string | null;
  finished_at: string | null;
  environment: {
    python: string | null;
    /** Distribution -> version. */
    packages: Record<string, string>;
    /** Module -> hash of its source, for the notebook folder's own modules. */
    sources: Record<string, string>;
  };
  values: LineageValueJSON[];
  /** Modules it imported by name: the name it is bound to, and the module. */
  modules: { name: string; module: string }[];
  files: { path: string; size: number; hash: string }[];
  /** Inputs that came from other steps, and the ids of the tasks that made them. */
  inputs: {
    name: string;
    kind: 'artifact' | 'gather';
    artifacts: ArtifactRefJSON[];
    from: number[];
  }[];
  outputs: Record<string, ArtifactRefJSON>;
}

/** GET nbflow/api/runs/RUN/lineage?step=STEP&name=NAME[&index=N] */
export interface LineageReply {
  artifact: {
    run: string;
    step: string;
    name: string;
    index: number | null;
    hash: string;
    size: number;
    type: string;
  };
  /** The id of the task that produced the artifact. */
  root: number;
  /** The parameters of the artifact's run. */
  params: Record<string, unknown>;
  /** The producing task first, then the upstream tasks. */
  tasks: LineageTaskJSON[];
  /** Every data file read along the way, and by which task. */
  files: { path: string; size: number; hash: string; task: number }[];
}
