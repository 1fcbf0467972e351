// Run tags as the server accepts them (POST nbflow/api/runs/RUN/tags): 1 to 100 characters,
// no whitespace and no control characters. Checked here first so that a typo is pointed out
// before any request; the server checks again. Pure functions, no DOM.

/** The longest tag, in characters (code points, as Python counts them). */
export const MAX_TAG_LENGTH = 100;

/** Why `tag` is not a valid tag, or null when it is. */
export function tagError(tag: string): string | null {
  const chars = [...tag];
  if (chars.length === 0) {
    return 'a tag cannot be empty';
  }
  if (chars.length > MAX_TAG_LENGTH) {
    return `a tag has at most ${MAX_TAG_LENGTH} characters (this one has ${chars.length})`;
  }
  for (const ch of chars) {
    if (/\s/u.test(ch)) {
      return `a tag cannot contain whitespace: "${tag}"`;
    }
    const code = ch.codePointAt(0) ?? 0;
    if (code < 0x20 || (code >= 0x7f && code <= 0x9f)) {
      return `a tag cannot contain control characters (U+${code
        .toString(16)
        .toUpperCase()
        .padStart(4, '0')})`;
    }
  }
  return null;
}

/**
 * What the "add a tag" field holds: tags separated by whitespace (so "a b" adds two), new ones
 * only, each once, in order; `error` names the first bad one (then no tag is to be added).
 */
export function parseTagInput(
  text: string,
  existing: readonly string[] = []
): { tags: string[]; error: string | null } {
  const tags: string[] = [];
  for (const word of text.split(/\s+/u)) {
    if (word === '') {
      continue;
    }
    const error = tagError(word);
    if (error) {
      return { tags: [], error };
    }
    if (!existing.includes(word) && !tags.includes(word)) {
      tags.push(word);
    }
  }
  return { tags, error: null };
}

/** A note as it is sent: trimmed, and null when nothing is left. */
export function normalizeNote(text: string | null | undefined): string | null {
  const trimmed = (text ?? '').trim();
  return trimmed === '' ? null : trimmed;
}

/** The first line of a note, shortened to `max` characters (for a history row). */
export function noteHeadline(
  note: string | null | undefined,
  max = 60
): string {
  const first = (note ?? '').trim().split('\n')[0].trim();
  const chars = [...first];
  return chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : first;
}
