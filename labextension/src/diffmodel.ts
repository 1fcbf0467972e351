// The comparison of two runs (GET nbflow/api/diff) as rows for the diff view: which run is A
// (the older), unified-diff lines classified for colouring, unchanged steps folded into one
// line, and each change as "A → B" texts. Pure functions, no DOM.

import { formatBytes, formatResources, formatValue, shortHash } from './format';
import {
  ChangeStatus,
  DiffReply,
  FileDiffJSON,
  InputDiffJSON,
  InputSideJSON,
  OutputDiffJSON,
  PackageDiffJSON,
  ParamDiffJSON,
  RunSummary,
  StepDiffJSON,
  StepOptionsJSON
} from './model';

/** A line of a unified diff: file header, hunk header, added, removed, context, or a remark. */
export type DiffLineKind =
  'header' | 'hunk' | 'add' | 'remove' | 'context' | 'meta';

export interface IDiffLine {
  kind: DiffLineKind;
  text: string;
}

/**
 * The kind of one line of a unified diff. `inHunk`: whether a hunk (`@@`) has started, since
 * before the first one `---`/`+++` are the file headers, and after it a removed line may well
 * start with `---`.
 */
export function classifyDiffLine(line: string, inHunk = true): DiffLineKind {
  if (line.startsWith('@@')) {
    return 'hunk';
  }
  if (!inHunk && (line.startsWith('---') || line.startsWith('+++'))) {
    return 'header';
  }
  if (line.startsWith('+')) {
    return 'add';
  }
  if (line.startsWith('-')) {
    return 'remove';
  }
  if (line.startsWith('\\')) {
    return 'meta'; // "\ No newline at end of file"
  }
  return inHunk ? 'context' : 'header';
}

/** A unified diff's lines, each classified; "" gives none. */
export function diffLines(diff: string): IDiffLine[] {
  if (!diff) {
    return [];
  }
  const lines = diff.replace(/\n$/, '').split('\n');
  let inHunk = false;
  return lines.map(text => {
    const kind = classifyDiffLine(text, inHunk);
    if (kind === 'hunk') {
      inHunk = true;
    }
    return { kind, text };
  });
}

/** Two runs in comparison order: the older first (by start, then id), as A. */
export function orderRuns<T extends Pick<RunSummary, 'id' | 'started_at'>>(
  x: T,
  y: T
): [T, T] {
  const tx = x.started_at ? Date.parse(x.started_at) : NaN;
  const ty = y.started_at ? Date.parse(y.started_at) : NaN;
  if (!isNaN(tx) && !isNaN(ty) && tx !== ty) {
    return tx < ty ? [x, y] : [y, x];
  }
  if (isNaN(tx) !== isNaN(ty)) {
    return isNaN(tx) ? [y, x] : [x, y]; // a run that never started is the newer
  }
  return x.id <= y.id ? [x, y] : [y, x];
}

/** What happened to something present in A, in B, or in both. */
export function sideStatus(a: unknown, b: unknown): ChangeStatus {
  if (a === null || a === undefined) {
    return 'added';
  }
  if (b === null || b === undefined) {
    return 'removed';
  }
  return 'changed';
}

/** A row of a two-sided table: what it is, A's text, B's text. */
export interface IChangeRow {
  name: string;
  status: ChangeStatus;
  a: string;
  b: string;
  /** Longer texts for a tooltip (full hashes), when there are any. */
  title?: string;
}

const ABSENT = '—';

export function paramRows(params: ParamDiffJSON[]): IChangeRow[] {
  return params.map(p => ({
    name: p.name,
    status: p.status,
    a: p.status === 'added' ? ABSENT : formatValue(p.a),
    b: p.status === 'removed' ? ABSENT : formatValue(p.b)
  }));
}

/** Packages whose versions differ, by name. */
export function packageRows(packages: PackageDiffJSON[]): IChangeRow[] {
  return packages
    .filter(p => p.a !== p.b)
    .sort((x, y) => x.name.localeCompare(y.name))
    .map(p => ({
      name: p.name,
      status: sideStatus(p.a, p.b),
      a: p.a ?? ABSENT,
      b: p.b ?? ABSENT
    }));
}

/** How a by-value input reads: its repr, else its type, else its hash. */
export function inputText(side: InputSideJSON | null): string {
  if (!side) {
    return ABSENT;
  }
  return side.repr ?? (side.type ? `<${side.type}>` : shortHash(side.hash));
}

export function inputRows(inputs: InputDiffJSON[]): IChangeRow[] {
  return inputs.map(i => ({
    name: i.kind === 'module' ? `${i.name} (module)` : i.name,
    status: sideStatus(i.a, i.b),
    a: inputText(i.a),
    b: inputText(i.b),
    title: [i.a ? `A ${i.a.hash}` : '', i.b ? `B ${i.b.hash}` : '']
      .filter(Boolean)
      .join('\n')
  }));
}

function fileSide(side: { size: number; hash: string } | null): string {
  return side ? `${formatBytes(side.size)} ${shortHash(side.hash)}` : ABSENT;
}

export function fileRows(files: FileDiffJSON[]): IChangeRow[] {
  return files.map(f => ({
    name: f.path,
    status: sideStatus(f.a, f.b),
    a: fileSide(f.a),
    b: fileSide(f.b),
    title: [f.a ? `A ${f.a.hash}` : '', f.b ? `B ${f.b.hash}` : '']
      .filter(Boolean)
      .join('\n')
  }));
}

/** An output's name as the notebook would index it: `accuracy[2]` for a foreach item. */
export function outputLabel(name: string, index: number | null): string {
  return index === null || index === undefined ? name : `${name}[${index}]`;
}

/** An output that differs, ready to show. */
export interface IOutputRow {
  label: string;
  status: ChangeStatus;
  /** Type and size on each side. */
  a: string;
  b: string;
  /** The comparer's one line, else why there is none. */
  text: string | null;
  details: string[];
  note: string | null;
  /** The comparer found the values equal (the stored bytes differ). */
  same: boolean;
}

export function outputRows(outputs: OutputDiffJSON[]): IOutputRow[] {
  const side = (ref: OutputDiffJSON['a']): string =>
    ref ? `${shortType(ref.type)} ${formatBytes(ref.size)}` : ABSENT;
  return outputs.map(o => ({
    label: outputLabel(o.name, o.index),
    status: sideStatus(o.a, o.b),
    a: side(o.a),
    b: side(o.b),
    text: o.summary ? o.summary.text : null,
    details: o.summary?.details ?? [],
    note: o.note,
    same: o.same
  }));
}

/** The steps as the view lists them: each changed step, and runs of unchanged ones folded. */
export type StepItem =
  { kind: 'step'; step: StepDiffJSON } | { kind: 'same'; names: string[] };

export function stepItems(steps: StepDiffJSON[]): StepItem[] {
  const items: StepItem[] = [];
  for (const step of steps) {
    if (step.status === 'same') {
      const last = items[items.length - 1];
      if (last && last.kind === 'same') {
        last.names.push(step.name);
      } else {
        items.push({ kind: 'same', names: [step.name] });
      }
    } else {
      items.push({ kind: 'step', step });
    }
  }
  return items;
}

/** "3 unchanged steps: load, clean, split" */
export function sameStepsLine(names: string[]): string {
  const n = names.length;
  return `${n} unchanged step${n === 1 ? '' : 's'}: ${names.join(', ')}`;
}

/** The one-line verdict at the top of the view. */
export function diffHeadline(reply: DiffReply): string {
  const params = reply.params.length;
  const { steps_changed, outputs_changed } = reply.counts;
  const plural = (n: number, word: string): string =>
    `${n} ${word}${n === 1 ? '' : 's'}`;
  if (params === 0 && steps_changed === 0 && outputs_changed === 0) {
    return 'No differences in parameters, steps or outputs.';
  }
  return `${plural(params, 'parameter')} changed, ${plural(
    steps_changed,
    'step'
  )} changed, ${plural(outputs_changed, 'output')} differ${
    outputs_changed === 1 ? 's' : ''
  }.`;
}

/** "pandas.core.frame.DataFrame" -> "DataFrame". */
export function shortType(type: string | null | undefined): string {
  if (!type) {
    return '';
  }
  const i = type.lastIndexOf('.');
  return i >= 0 ? type.slice(i + 1) : type;
}

/** A step's header options as its cell writes them: "--foreach C in Cs --retry 2 memory=4G". */
export function formatStepOptions(opts: StepOptionsJSON | null): string {
  if (!opts) {
    return '—';
  }
  const res = formatResources(opts.resources);
  const parts = [
    opts.foreach ? `--foreach ${opts.foreach.var} in ${opts.foreach.expr}` : '',
    opts.retry ? `--retry ${opts.retry}` : '',
    opts.timeout !== null && opts.timeout !== undefined
      ? `--timeout ${opts.timeout}`
      : '',
    opts.catch ? '--catch' : '',
    opts.force ? '--force' : '',
    res !== 'none' && res !== '—' ? `%%resources ${res}` : ''
  ].filter(Boolean);
  return parts.length ? parts.join(' ') : '(none)';
}

/** The options row of a step whose header changed, if it did. */
export function optionRows(step: StepDiffJSON): IChangeRow[] {
  const pair = step.options;
  if (!pair) {
    return [];
  }
  return [
    {
      name: 'header',
      status: sideStatus(pair.a, pair.b),
      a: formatStepOptions(pair.a),
      b: formatStepOptions(pair.b)
    }
  ];
}
