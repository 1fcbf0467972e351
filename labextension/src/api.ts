// The client of nbflow's REST API (nbflow/server/handlers.py): URLs under `nbflow/api/`, always
// with `notebook=PATH` (the notebook whose store is read), requests through
// `ServerConnection.makeRequest` (Jupyter's token and XSRF handling), typed replies, and errors
// thrown with the server's own message.

import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  ArtifactReply,
  ClusterReply,
  DiffReply,
  ExportReply,
  ExportRequest,
  FlowsReply,
  LineageReply,
  LogsReply,
  RunDetail,
  RunsReply,
  StartRunReply,
  TagsReply,
  TagsRequest,
  TagsUpdateReply
} from './model';

export type Query = Record<string, string | number | null | undefined>;

/** An error reply from the server (or no reply at all: `status` 0). */
export class NbflowApiError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'NbflowApiError';
  }
}

/**
 * The URL of an API endpoint: `baseUrl` + `nbflow/api/` + the path parts (each URI-encoded),
 * and the query without its null/undefined/'' entries.
 */
export function apiUrl(
  baseUrl: string,
  parts: string[],
  query: Query = {}
): string {
  const path = URLExt.join(
    baseUrl,
    'nbflow',
    'api',
    ...parts.map(p => encodeURIComponent(p))
  );
  const params: Record<string, string> = {};
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== '') {
      params[key] = String(value);
    }
  }
  return path + URLExt.objectToQueryString(params);
}

/** The endpoints, each for one notebook (`notebook` is its path from the server root). */
export class NbflowApi {
  constructor(
    readonly serverSettings: ServerConnection.ISettings = ServerConnection.makeSettings()
  ) {}

  /** Flows with runs in the notebook's store. */
  flows(notebook: string): Promise<FlowsReply> {
    return this.get(['flows'], { notebook });
  }

  /** Runs, newest first, with task counts. */
  runs(
    notebook: string,
    options: {
      flow?: string;
      status?: string;
      tag?: string;
      limit?: number;
      offset?: number;
    } = {}
  ): Promise<RunsReply> {
    return this.get(['runs'], { notebook, ...options });
  }

  /** One run: steps, tasks and DAG. */
  run(notebook: string, runId: string): Promise<RunDetail> {
    return this.get(['runs', runId], { notebook });
  }

  /** A task's log; `tail` > 0 keeps only its last lines. */
  logs(
    notebook: string,
    runId: string,
    taskId: number,
    options: { stream?: 'stdout' | 'stderr'; tail?: number } = {}
  ): Promise<LogsReply> {
    return this.get(['runs', runId, 'tasks', String(taskId), 'logs'], {
      notebook,
      stream: options.stream ?? 'stdout',
      tail: options.tail
    });
  }

  /** An artifact's type, size, origin and a small preview. */
  artifact(notebook: string, hash: string): Promise<ArtifactReply> {
    return this.get(['artifacts', hash], { notebook });
  }

  /** The cluster of the newest live run in the notebook's store. */
  cluster(notebook: string): Promise<ClusterReply> {
    return this.get(['cluster'], { notebook });
  }

  /** Tags in the notebook's store, with how many runs carry each. */
  tags(notebook: string): Promise<TagsReply> {
    return this.get(['tags'], { notebook });
  }

  /** Add and remove a run's tags, and set its note; the server refuses a bad tag (400). */
  updateTags(
    notebook: string,
    runId: string,
    request: TagsRequest
  ): Promise<TagsUpdateReply> {
    return this.request(['runs', runId, 'tags'], { notebook }, 'POST', request);
  }

  /** What changed from run `a` to run `b`. */
  diff(notebook: string, a: string, b: string): Promise<DiffReply> {
    return this.get(['diff'], { notebook, a, b });
  }

  /** How an output of a task of a run was made: its task and every task upstream. */
  lineage(
    notebook: string,
    runId: string,
    artifact: {
      step: string;
      name: string;
      index?: number | null;
      task?: number | null;
    }
  ): Promise<LineageReply> {
    return this.get(['runs', runId, 'lineage'], {
      notebook,
      step: artifact.step,
      name: artifact.name,
      index: artifact.index,
      task: artifact.task
    });
  }

  /** Start `nbflow run NOTEBOOK` on the server ("Run flow"). */
  startRun(notebook: string): Promise<StartRunReply> {
    return this.request(['runs'], {}, 'POST', { notebook });
  }

  /** Write the notebook as a flow module (and its schedule): `nbflow export` / `schedule`. */
  exportFlow(request: ExportRequest): Promise<ExportReply> {
    return this.request(['export'], {}, 'POST', request);
  }

  private get<T>(parts: string[], query: Query): Promise<T> {
    return this.request(parts, query, 'GET');
  }

  private async request<T>(
    parts: string[],
    query: Query,
    method: 'GET' | 'POST',
    body?: unknown
  ): Promise<T> {
    const url = apiUrl(this.serverSettings.baseUrl, parts, query);
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(
        url,
        init,
        this.serverSettings
      );
    } catch (error) {
      throw new NbflowApiError(
        `nbflow: the server did not answer (${(error as Error).message ?? error})`,
        0
      );
    }
    const text = await response.text();
    let data: any = null;
    if (text.length > 0) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (!response.ok) {
      throw new NbflowApiError(
        errorMessage(response, data, text),
        response.status
      );
    }
    if (data === null) {
      throw new NbflowApiError(
        `nbflow: ${method} ${url} did not reply with JSON`,
        response.status
      );
    }
    return data as T;
  }
}

/** The message of an error reply: jupyter_server's JSON `message`, else the body or status. */
export function errorMessage(
  response: Pick<Response, 'status' | 'statusText'>,
  data: any,
  text: string
): string {
  if (data && typeof data === 'object' && typeof data.message === 'string') {
    return data.message || data.reason || `HTTP ${response.status}`;
  }
  if (text && text.length < 500 && !text.trim().startsWith('<')) {
    return text.trim();
  }
  return `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`;
}
