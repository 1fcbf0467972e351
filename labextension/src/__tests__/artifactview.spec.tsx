// Artifact previews: HTML only through the sanitizer, text as text (never parsed as HTML),
// images as PNG data URLs only.

import * as React from 'react';
import { renderToStaticMarkup } from 'react-dom/server';

import { Preview } from '../artifactview';

const sanitizer = {
  sanitize: jest.fn((dirty: string) =>
    dirty
      .replace(/<script[\s\S]*?<\/script>/g, '')
      .replace(/ onclick="[^"]*"/g, '')
  )
};

describe('Preview', () => {
  beforeEach(() => sanitizer.sanitize.mockClear());

  it('renders HTML only after the sanitizer cleaned it', () => {
    const html =
      '<table onclick="evil()"><tr><td>1</td></tr></table><script>alert(1)</script>';
    const out = renderToStaticMarkup(
      <Preview
        preview={{ kind: 'html', html, shape: [1, 1] }}
        sanitizer={sanitizer}
      />
    );
    expect(sanitizer.sanitize).toHaveBeenCalledWith(html);
    expect(out).toContain('<table><tr><td>1</td></tr></table>');
    expect(out).not.toContain('<script>');
    expect(out).not.toContain('onclick');
    expect(out).toContain('shape 1 × 1');
  });

  it('renders text as text: markup in it stays visible, not parsed', () => {
    const out = renderToStaticMarkup(
      <Preview
        preview={{
          kind: 'text',
          text: '<b>bold?</b> & <img src=x onerror=alert(1)>'
        }}
        sanitizer={sanitizer}
      />
    );
    expect(sanitizer.sanitize).not.toHaveBeenCalled();
    expect(out).toContain(
      '&lt;b&gt;bold?&lt;/b&gt; &amp; &lt;img src=x onerror=alert(1)&gt;'
    );
    expect(out).not.toContain('<b>');
    expect(out).not.toContain('<img');
  });

  it('renders a PNG as a data URL', () => {
    const out = renderToStaticMarkup(
      <Preview
        preview={{ kind: 'image', mimetype: 'image/png', data: 'iVBORw0KGgo=' }}
        sanitizer={sanitizer}
      />
    );
    expect(out).toContain(
      '<img alt="artifact preview" src="data:image/png;base64,iVBORw0KGgo="'
    );
  });

  it('refuses other image types and data that is not base64', () => {
    for (const preview of [
      { kind: 'image' as const, mimetype: 'image/svg+xml', data: 'PHN2Zz4=' },
      { kind: 'image' as const, mimetype: 'image/png', data: '"><script>' }
    ]) {
      const out = renderToStaticMarkup(
        <Preview preview={preview} sanitizer={sanitizer} />
      );
      expect(out).not.toContain('<img');
      expect(out).toContain('cannot be shown');
    }
  });
});
