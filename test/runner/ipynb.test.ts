import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  foldCarriageReturns,
  readNotebook,
  serializeNotebook,
  splitLinesKeepEnds,
  stableCellId,
  writeNotebook,
} from '../../scripts/notebook/ipynb.js';
import { prepareForSave } from '../../scripts/notebook/runner.js';

const reference = join(__dirname, '..', 'fixtures', 'runner', 'nbformat-reference.ipynb');

describe('ipynb', () => {
  it('writes byte-for-byte what Jupyter (nbformat.write) writes', () => {
    // The fixture was written by nbformat itself (make_nbformat_reference.py): key order, line
    // splitting (including \r, \v, \f, \x1c, \x85), JSON and PNG handling, trailing newline.
    const text = readFileSync(reference, 'utf8');
    expect(serializeNotebook(readNotebook(reference))).toBe(text);
  });

  it('splits lines like Python str.splitlines(keepends=True)', () => {
    expect(splitLinesKeepEnds('')).toEqual([]);
    expect(splitLinesKeepEnds('a')).toEqual(['a']);
    expect(splitLinesKeepEnds('a\n')).toEqual(['a\n']);
    expect(splitLinesKeepEnds('a\r\nb\rc\n\nd')).toEqual(['a\r\n', 'b\r', 'c\n', '\n', 'd']);
    expect(splitLinesKeepEnds('x\u2028y\u2029z')).toEqual(['x\u2028', 'y\u2029', 'z']);
  });

  it('folds carriage returns within a line, as a terminal shows them', () => {
    expect(foldCarriageReturns('10%\r50%\r100%\ndone\n')).toBe('100%\ndone\n');
    expect(foldCarriageReturns('a\r\nb')).toBe('a\nb');
    expect(foldCarriageReturns('no returns')).toBe('no returns');
  });

  it('gives cells without ids stable ids and writes atomically', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-ipynb-'));
    const path = join(dir, 'n.ipynb');
    writeNotebook(path, {
      cells: [{ cell_type: 'code', id: stableCellId('n', 0), source: '1', metadata: {}, outputs: [], execution_count: null }],
      metadata: {},
      nbformat: 4,
      nbformat_minor: 5,
    });
    const again = readNotebook(path);
    expect(again.cells[0]!.id).toBe(stableCellId('n', 0));
    expect(stableCellId('n', 0)).toMatch(/^[0-9a-f]{8}$/);
    expect(stableCellId('n', 0)).not.toBe(stableCellId('n', 1));
  });

  it('names the file and cell when a notebook is malformed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-ipynb-'));
    const path = join(dir, 'bad.ipynb');
    writeNotebook(path, { cells: [], metadata: {}, nbformat: 4, nbformat_minor: 5 });
    const text = readFileSync(path, 'utf8').replace('"cells": []', '"cells": [{"cell_type": "python", "source": ""}]');
    writeFileSync(path, text);
    expect(() => readNotebook(path)).toThrow(`${path}: cell 1: unknown cell_type "python"`);
  });

  it('drops live-only outputs when preparing a notebook for commit', () => {
    const saved = prepareForSave({
      cells: [
        {
          cell_type: 'code',
          id: 'c',
          source: 'x',
          metadata: {},
          execution_count: 1,
          outputs: [
            { output_type: 'display_data', data: { 'text/html': '<script>bundle</script>' }, metadata: { deepalign: { omit_on_save: true } } },
            {
              output_type: 'display_data',
              data: { 'text/html': '<div>live</div>', 'image/png': 'AAAA', 'text/plain': 'fig' },
              metadata: { deepalign: { omit_mimes_on_save: ['text/html'] }, other: 1 },
            },
            { output_type: 'stream', name: 'stdout', text: 'kept\n' },
          ],
        },
      ],
      metadata: {},
      nbformat: 4,
      nbformat_minor: 5,
    });
    expect(saved.cells[0]!.outputs).toEqual([
      { output_type: 'display_data', data: { 'image/png': 'AAAA', 'text/plain': 'fig' }, metadata: { other: 1 } },
      { output_type: 'stream', name: 'stdout', text: 'kept\n' },
    ]);
  });
});
