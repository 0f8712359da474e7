import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { showTable, tableToCsv, tableToHtml, tableToText, toDataFrame } from '../../lib/report/index.js';
import { installFakeNotebook } from './fake-notebook.js';

const records = [
  { model: 'base', kl: 0.123456789, note: 'has, comma' },
  { model: 'aligned "deep"', kl: 2, note: 'two\nlines' },
  { model: 'rap', kl: null, extra: 1e-7 },
];

afterEach(() => vi.restoreAllMocks());

describe('tables', () => {
  it('builds a DataFrame with columns in first-seen order and nulls for missing keys', () => {
    const df = toDataFrame(records);
    expect(df.columns).toEqual(['model', 'kl', 'note', 'extra']);
    expect(df.shape).toEqual([3, 4]);
    expect(df.values[0]).toEqual(['base', 0.123456789, 'has, comma', null]);
  });

  it('writes RFC 4180 CSV with full precision (danfojs toCSV does not quote)', () => {
    expect(tableToCsv(records)).toBe(
      'model,kl,note,extra\n' + 'base,0.123456789,"has, comma",\n' + '"aligned ""deep""",2,"two\nlines",\n' + 'rap,,,1e-7\n',
    );
  });

  it('renders aligned text and escaped HTML with readable numbers', () => {
    expect(tableToText([{ a: 1, b: 'x' }, { a: 0.5, b: 'yy' }])).toBe('  a  b\n  1  x\n0.5  yy');
    expect(tableToHtml([{ 'a<b': '<script>', n: 0.123456 }])).toContain('<th>a&lt;b</th><th>n</th>');
    expect(tableToHtml([{ 'a<b': '<script>', n: 0.123456 }])).toContain('<td>&lt;script&gt;</td><td>0.1235</td>');
  });

  it('showTable writes <dir>/<name>.csv and prints the table outside a notebook', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-table-'));
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    showTable(records, 'nb/t', { dir });
    expect(readFileSync(join(dir, 'nb', 't.csv'), 'utf8')).toBe(tableToCsv(records));
    expect(log.mock.calls[0]![0]).toContain('table nb/t: wrote');
  });

  it('showTable displays HTML + text in a notebook', () => {
    const fake = installFakeNotebook();
    try {
      showTable([{ a: 1 }]);
      expect(fake.messages).toHaveLength(1);
      expect(fake.messages[0]!.data['text/html']).toContain('<table class="dataframe">');
      expect(fake.messages[0]!.data['text/plain']).toBe('a\n1');
    } finally {
      fake.uninstall();
    }
  });

  it('rejects empty tables and bad names with messages that say what was wrong', () => {
    expect(() => showTable([])).toThrow('showTable(): no rows');
    expect(() => showTable([{ a: 1 }], '../escape')).toThrow('showTable: name "../escape" must be a relative path');
  });
});
