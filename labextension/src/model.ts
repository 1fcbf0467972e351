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
