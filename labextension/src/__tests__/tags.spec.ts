// Tag validation as the server's (1-100 characters, no whitespace, no control characters), the
// "add a tag" field's parsing, and notes.

import {
  MAX_TAG_LENGTH,
  normalizeNote,
  noteHeadline,
  parseTagInput,
  tagError
} from '../tags';

describe('tagError', () => {
  it('accepts ordinary tags, punctuation and non-ASCII letters', () => {
    for (const tag of ['baseline', 'v1.2', 'best-so-far', 'a,b', 'été', '🚀']) {
      expect(tagError(tag)).toBeNull();
    }
  });

  it('refuses empty and too long tags, counting characters not UTF-16 units', () => {
    expect(tagError('')).toMatch(/empty/);
    expect(tagError('x'.repeat(MAX_TAG_LENGTH))).toBeNull();
    expect(tagError('x'.repeat(MAX_TAG_LENGTH + 1))).toMatch(/at most 100/);
    // 100 emoji are 200 UTF-16 units but 100 characters.
    expect(tagError('🚀'.repeat(100))).toBeNull();
  });

  it('refuses whitespace of any kind', () => {
    for (const tag of ['a b', 'a\tb', 'a\nb', 'a\u00a0b', ' a']) {
      expect(tagError(tag)).toMatch(/whitespace/);
    }
  });

  it('refuses control characters', () => {
    expect(tagError('a\u0000b')).toMatch(/control characters \(U\+0000\)/);
    expect(tagError('a\u007fb')).toMatch(/U\+007F/);
    expect(tagError('a\u009bb')).toMatch(/U\+009B/);
  });
});

describe('parseTagInput', () => {
  it('splits on whitespace, drops duplicates and tags the run has', () => {
    expect(parseTagInput('  best  v2 best baseline ', ['baseline'])).toEqual({
      tags: ['best', 'v2'],
      error: null
    });
    expect(parseTagInput('   ')).toEqual({ tags: [], error: null });
  });

  it('adds nothing when one tag is bad', () => {
    const out = parseTagInput(`ok ${'x'.repeat(101)}`);
    expect(out.tags).toEqual([]);
    expect(out.error).toMatch(/at most/);
  });
});

describe('notes', () => {
  it('sends a blank note as null, others trimmed', () => {
    expect(normalizeNote('  ')).toBeNull();
    expect(normalizeNote(null)).toBeNull();
    expect(normalizeNote(' tried C=10 \n')).toBe('tried C=10');
  });

  it("shows a note's first line, shortened", () => {
    expect(noteHeadline('first line\nsecond')).toBe('first line');
    expect(noteHeadline('x'.repeat(80), 10)).toBe(`${'x'.repeat(9)}…`);
    expect(noteHeadline(null)).toBe('');
  });
});
