// An artifact's lineage (GET nbflow/api/runs/RUN/lineage) as rows for the lineage view: each
// task with a label, how far upstream it is, where it was cached from, its packages, values,
// files, and which tasks its inputs came from. Pure functions, no DOM.

import { outputLabel, shortType } from './diffmodel';
import { formatBytes, formatValue, shortHash } from './format';
import { LineageReply, LineageTaskJSON } from './model';

/** Which lineage to show: an output of one task of a run (the sidebar asks, a tab shows it). */
export interface ILineageRequest {
  notebook: string;
  run: string;
  step: string;
  name: string;
  index: number | null;
  /** The task whose output it is (a kernel's run can have run a step more than once). */
  task: number;
}

/** `logreg[2]` for a foreach task, `load` otherwise. */
export function taskLabel(
  task: Pick<LineageTaskJSON, 'step' | 'index'>
): string {
  return task.index === null || task.index === undefined
    ? task.step
    : `${task.step}[${task.index}]`;
}

/** "cached from run 20261127-… (task 12)", or null when the task really ran. */
export function cachedText(task: LineageTaskJSON): string | null {
  const from = task.cached_from;
  if (!from) {
    return null;
  }
  if (from.run === null || from.run === undefined) {
    return `cached from task ${from.task}`;
  }
  if (from.run === task.run) {
    return `cached from task ${from.task} of this run`;
  }
  return `cached from run ${from.run} (task ${from.task})`;
}

export interface ILineageInput {
  name: string;
  kind: 'artifact' | 'gather';
  /** Type and size of what arrived ("list of 4" for a gathered foreach output). */
  text: string;
  /** The tasks it came from, with their labels; ids not in the lineage have label null. */
  from: { id: number; label: string | null }[];
}

export interface ILineageTask {
  id: number;
  label: string;
  run: string;
  status: string;
  /** Steps between it and the artifact's task (0: the producing task). */
  depth: number;
  root: boolean;
  cached: string | null;
  item: string | null;
  code: string;
  worker: string | null;
  python: string | null;
  /** `name==version`, by name. */
  packages: string[];
  /** The notebook folder's own modules, with their source hashes. */
  sources: { module: string; hash: string }[];
  /** By-value inputs, parameters first: name, repr (or type), size, hash. */
  values: {
    name: string;
    text: string;
    parameter: boolean;
    size: string;
    hash: string;
  }[];
  modules: string[];
  files: { path: string; size: string; hash: string; fullHash: string }[];
  inputs: ILineageInput[];
  outputs: string[];
}

/** Each task's distance from the producing task along input edges (unreachable: Infinity). */
export function lineageDepths(reply: LineageReply): Map<number, number> {
  const byId = new Map(reply.tasks.map(t => [t.id, t]));
  const depth = new Map<number, number>([[reply.root, 0]]);
  const queue = [reply.root];
  while (queue.length > 0) {
    const id = queue.shift()!;
    const task = byId.get(id);
    for (const input of task?.inputs ?? []) {
      for (const up of input.from) {
        if (byId.has(up) && !depth.has(up)) {
          depth.set(up, depth.get(id)! + 1);
          queue.push(up);
        }
      }
    }
  }
  for (const t of reply.tasks) {
    if (!depth.has(t.id)) {
      depth.set(t.id, Infinity);
    }
  }
  return depth;
}

/** The lineage's tasks as the view shows them: the producing task first, then by distance. */
export function lineageTasks(reply: LineageReply): ILineageTask[] {
  const depths = lineageDepths(reply);
  const labels = new Map(reply.tasks.map(t => [t.id, taskLabel(t)]));
  const order = reply.tasks.map((t, i) => ({ t, i }));
  order.sort(
    (x, y) =>
      (depths.get(x.t.id) ?? Infinity) - (depths.get(y.t.id) ?? Infinity) ||
      x.i - y.i
  );
  return order.map(({ t }) => {
    const env = t.environment ?? { python: null, packages: {}, sources: {} };
    return {
      id: t.id,
      label: labels.get(t.id)!,
      run: t.run,
      status: t.status,
      depth: depths.get(t.id) ?? Infinity,
      root: t.id === reply.root,
      cached: cachedText(t),
      item: t.item,
      code: t.code ?? '',
      worker: t.worker,
      python: env.python ?? null,
      packages: Object.entries(env.packages ?? {})
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([name, version]) => `${name}==${version}`),
      sources: Object.entries(env.sources ?? {})
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([module, hash]) => ({ module, hash })),
      values: [...(t.values ?? [])]
        .sort(
          (a, b) =>
            Number(b.parameter) - Number(a.parameter) ||
            a.name.localeCompare(b.name)
        )
        .map(v => ({
          name: v.name,
          text: v.repr ?? (v.type ? `<${v.type}>` : shortHash(v.hash)),
          parameter: v.parameter,
          size: formatBytes(v.size),
          hash: v.hash
        })),
      modules: (t.modules ?? []).map(m =>
        m.name === m.module ? m.module : `${m.name} = ${m.module}`
      ),
      files: (t.files ?? []).map(f => ({
        path: f.path,
        size: formatBytes(f.size),
        hash: shortHash(f.hash),
        fullHash: f.hash
      })),
      inputs: (t.inputs ?? []).map(i => ({
        name: i.name,
        kind: i.kind,
        text:
          i.kind === 'gather'
            ? `list of ${i.artifacts.length}`
            : i.artifacts
                .map(a => `${shortType(a.type)} ${formatBytes(a.size)}`)
                .join(', '),
        from: i.from.map(id => ({ id, label: labels.get(id) ?? null }))
      })),
      outputs: Object.keys(t.outputs ?? {}).sort()
    };
  });
}

/** The heading: "model[2] of step logreg, run 2026…" */
export function artifactHeadline(reply: LineageReply): string {
  const a = reply.artifact;
  return `${outputLabel(a.name, a.index)} from step ${a.step} of run ${a.run}`;
}

/** The run's parameters as `name = value` rows. */
export function paramList(
  params: Record<string, unknown> | null | undefined
): { name: string; value: string }[] {
  return Object.entries(params ?? {}).map(([name, value]) => ({
    name,
    value: formatValue(value)
  }));
}
