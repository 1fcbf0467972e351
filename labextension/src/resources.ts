// A step cell's header lines, read and rewritten as text: which lines are the header, the step's
// name, and the `%%resources` line (`parseResources`, `setResources`). Pure string functions,
// following nbflow/header.py and nbflow/analyze.py: after leading blank lines, the header is the
// run of consecutive lines that are `%%step ...` or `%%resources ...` lines.

export const STEP_MAGIC = '%%step';
export const RESOURCES_MAGIC = '%%resources';

/** The resources a step cell asks for, as written (memory keeps its units, e.g. "64G"). */
export interface CellResources {
  memory?: string;
  cpus?: number;
  gpus?: number;
}

/** A resource change: a key set to a value sets it, set to undefined / '' / NaN removes it. */
export type ResourcesUpdate = {
  memory?: string | null;
  cpus?: number | null;
  gpus?: number | null;
};

const RESOURCE_KEYS = ['memory', 'cpus', 'gpus'] as const;
type ResourceKey = (typeof RESOURCE_KEYS)[number];

/** The header of a cell: line indices into `source.split('\n')`. */
export interface CellHeader {
  /** Index of the first header line, or -1 when the cell has no header. */
  start: number;
  /** Index after the last header line. */
  end: number;
  /** Index of the `%%step` line, or -1. */
  stepLine: number;
  /** Index of the `%%resources` line, or -1. */
  resourcesLine: number;
  /** The step's name from the `%%step` line, or null. */
  name: string | null;
}

/** Which header line `line` is, if any (nbflow.header._header_kind). */
export function headerKind(line: string): string | null {
  const stripped = line.trim();
  for (const magic of [STEP_MAGIC, RESOURCES_MAGIC]) {
    if (
      stripped === magic ||
      (stripped.startsWith(magic) && /\s/.test(stripped.charAt(magic.length)))
    ) {
      return magic;
    }
  }
  return null;
}

/** Find the header lines of a cell's source. */
export function parseHeader(source: string): CellHeader {
  const lines = source.split('\n');
  let start = 0;
  while (start < lines.length && !lines[start].trim()) {
    start++;
  }
  let end = start;
  let stepLine = -1;
  let resourcesLine = -1;
  while (end < lines.length) {
    const kind = headerKind(lines[end]);
    if (kind === null) {
      break;
    }
    if (kind === STEP_MAGIC && stepLine < 0) {
      stepLine = end;
    } else if (kind === RESOURCES_MAGIC && resourcesLine < 0) {
      resourcesLine = end;
    }
    end++;
  }
  if (end === start) {
    return { start: -1, end: -1, stepLine: -1, resourcesLine: -1, name: null };
  }
  const name = stepLine >= 0 ? stepNameOf(lines[stepLine]) : null;
  return { start, end, stepLine, resourcesLine, name };
}

/** The name of the step a cell defines, or null if it is not a step cell. */
export function stepName(source: string): string | null {
  return parseHeader(source).name;
}

/** Whether a cell's source is a step cell (it has a `%%step` header line). */
export function isStepCell(source: string): boolean {
  return parseHeader(source).stepLine >= 0;
}

const VALUE_OPTIONS = new Set(['--retry', '--timeout']);
const OPTION_AT = /^--(foreach|retry|timeout|catch|force)(=|$)/;

/** The NAME of a `%%step NAME [options]` line: its first token that is not an option. */
function stepNameOf(line: string): string | null {
  const tokens = line.trim().slice(STEP_MAGIC.length).trim().split(/\s+/);
  let i = 0;
  while (i < tokens.length) {
    const tok = tokens[i++];
    if (!tok) {
      continue;
    }
    if (!tok.startsWith('--')) {
      return /^[A-Za-z_][A-Za-z0-9_-]*$/.test(tok) ? tok : null;
    }
    const [opt, ...rest] = tok.split('=');
    const inline = rest.length > 0;
    if (VALUE_OPTIONS.has(opt) && !inline) {
      if (i < tokens.length && !tokens[i].startsWith('--')) {
        i++;
      }
    } else if (opt === '--foreach') {
      // VAR in EXPR: EXPR runs up to the next option.
      if (!inline) {
        i++;
      }
      while (i < tokens.length && !OPTION_AT.test(tokens[i])) {
        i++;
      }
    }
  }
  return null;
}

/** The resources of a cell's `%%resources` header line; {} without one. */
export function parseResources(source: string): CellResources {
  const header = parseHeader(source);
  if (header.resourcesLine < 0) {
    return {};
  }
  const out: CellResources = {};
  for (const token of resourceTokens(
    source.split('\n')[header.resourcesLine]
  )) {
    const eq = token.indexOf('=');
    if (eq < 0) {
      continue;
    }
    const key = token.slice(0, eq);
    const value = token.slice(eq + 1);
    if (!value || out[key as ResourceKey] !== undefined) {
      continue;
    }
    if (key === 'memory') {
      out.memory = value;
    } else if (key === 'cpus' || key === 'gpus') {
      const n = Number(value);
      if (value.trim() && isFinite(n)) {
        out[key] = n;
      }
    }
  }
  return out;
}

/**
 * Rewrite a step cell's `%%resources` line: keys given in `res` are set, or removed when empty
 * (undefined, null, '', NaN); keys not given keep their value. Other tokens of the line, the
 * other header lines and the body are kept as they are. The line is removed when nothing is
 * left on it, and inserted right below the `%%step` line when there was none.
 *
 * Throws when the cell is not a step cell.
 */
export function setResources(source: string, res: ResourcesUpdate): string {
  const header = parseHeader(source);
  if (header.stepLine < 0) {
    throw new Error(
      'not a step cell: the cell has no `%%step NAME` header line'
    );
  }
  const lines = source.split('\n');
  const existing =
    header.resourcesLine >= 0 ? lines[header.resourcesLine] : null;
  const tokens = existing === null ? [] : resourceTokens(existing);
  const given = new Set(
    RESOURCE_KEYS.filter(k => Object.prototype.hasOwnProperty.call(res, k))
  );

  const kept: string[] = [];
  const placed = new Set<ResourceKey>();
  for (const token of tokens) {
    const key = token.split('=')[0] as ResourceKey;
    if (!given.has(key)) {
      kept.push(token);
      continue;
    }
    if (placed.has(key)) {
      continue; // a duplicate key: the new value replaces both
    }
    placed.add(key);
    const value = formatValue(res[key]);
    if (value !== null) {
      kept.push(`${key}=${value}`);
    }
  }
  for (const key of RESOURCE_KEYS) {
    if (given.has(key) && !placed.has(key)) {
      const value = formatValue(res[key]);
      if (value !== null) {
        kept.push(`${key}=${value}`);
      }
    }
  }

  if (existing !== null) {
    if (kept.length === 0) {
      lines.splice(header.resourcesLine, 1);
    } else {
      const indent = /^\s*/.exec(existing)![0];
      const cr = existing.endsWith('\r') ? '\r' : '';
      lines[header.resourcesLine] =
        `${indent}${RESOURCES_MAGIC} ${kept.join(' ')}${cr}`;
    }
  } else if (kept.length > 0) {
    const stepLine = lines[header.stepLine];
    const indent = /^\s*/.exec(stepLine)![0];
    const cr = stepLine.endsWith('\r') ? '\r' : '';
    lines.splice(
      header.stepLine + 1,
      0,
      `${indent}${RESOURCES_MAGIC} ${kept.join(' ')}${cr}`
    );
  }
  return lines.join('\n');
}

/** The key=value tokens after `%%resources` on its line. */
function resourceTokens(line: string): string[] {
  return line
    .trim()
    .slice(RESOURCES_MAGIC.length)
    .trim()
    .split(/\s+/)
    .filter(t => t.length > 0);
}

function formatValue(value: string | number | null | undefined): string | null {
  if (value === undefined || value === null) {
    return null;
  }
  if (typeof value === 'number') {
    return isFinite(value) ? String(value) : null;
  }
  const text = value.trim().replace(/\s+/g, '');
  return text ? text : null;
}

const BYTE_SIZES: Record<string, number> = (() => {
  const base: Record<string, number> = {
    kB: 1e3,
    MB: 1e6,
    GB: 1e9,
    TB: 1e12,
    PB: 1e15,
    KiB: 2 ** 10,
    MiB: 2 ** 20,
    GiB: 2 ** 30,
    TiB: 2 ** 40,
    PiB: 2 ** 50,
    B: 1,
    '': 1
  };
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(base)) {
    out[k.toLowerCase()] = v;
    if (k && !k.includes('i')) {
      out[k[0].toLowerCase()] = v; // "64G" = 64 GB
    }
    if (k.includes('i')) {
      out[k.slice(0, -1).toLowerCase()] = v; // "64Gi" = 64 GiB
    }
  }
  return out;
})();

/**
 * Bytes of a `memory=` value as Dask's `parse_bytes` reads it ("64G" = 64·10⁹, "64GiB" = 64·2³⁰,
 * "2000000" bytes); null when it is not an amount of bytes above zero.
 */
export function parseMemory(text: string): number | null {
  const s = text.replace(/\s+/g, '');
  const m = /^((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)([A-Za-z]*)$/i.exec(s);
  if (!m) {
    return null;
  }
  const multiplier = BYTE_SIZES[m[2].toLowerCase()];
  if (multiplier === undefined) {
    return null;
  }
  const bytes = Math.floor(Number(m[1]) * multiplier);
  return isFinite(bytes) && bytes > 0 ? bytes : null;
}

/** The scale dialog's fields as typed: empty means "drop this key". */
export interface ResourceForm {
  memory: string;
  cpus: string;
  gpus: string;
}

/** The form's values as a complete update (every key given), or what is wrong with them. */
export function readResourceForm(form: ResourceForm): {
  update: ResourcesUpdate;
  errors: string[];
} {
  const errors: string[] = [];
  const update: ResourcesUpdate = { memory: null, cpus: null, gpus: null };
  const memory = form.memory.trim();
  if (memory) {
    if (parseMemory(memory) === null) {
      errors.push(
        `memory '${memory}' is not an amount of bytes: write e.g. 64G, 512MiB or 2000000`
      );
    } else {
      update.memory = memory.replace(/\s+/g, '');
    }
  }
  const cpus = form.cpus.trim();
  if (cpus) {
    const n = Number(cpus);
    if (!isFinite(n) || n <= 0) {
      errors.push(`cpus '${cpus}' must be a number above 0, e.g. 4 or 0.5`);
    } else {
      update.cpus = n;
    }
  }
  const gpus = form.gpus.trim();
  if (gpus) {
    const n = Number(gpus);
    if (!Number.isInteger(n) || n < 0) {
      errors.push(`gpus '${gpus}' must be a whole number from 0, e.g. 1`);
    } else {
      update.gpus = n;
    }
  }
  return { update, errors };
}
