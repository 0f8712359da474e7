import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { resultsPath, writeResults, type NotebookResults } from '../../lib/report/index.js';

const valid = (): NotebookResults => ({
  notebook: '00_quickstart',
  seed: 1234,
  settings: { steps: 10 },
  metrics: { loss: 1.5, perLayer: [0.1, 0.2] },
  claims: [{ id: 'loss-drops', paper: 'none', expected: '< 2', observed: 1.5, holds: true }],
});

describe('writeResults', () => {
  it('writes figures/<notebook>/results.json with the documented key order', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-results-'));
    vi.spyOn(console, 'log').mockImplementation(() => {});
    const r = valid();
    // Keys given out of order come back in the documented order.
    writeResults({ claims: r.claims, metrics: r.metrics, settings: r.settings, seed: r.seed, notebook: r.notebook }, { dir });
    const path = resultsPath('00_quickstart', dir);
    expect(path).toBe(join(dir, '00_quickstart', 'results.json'));
    const text = readFileSync(path, 'utf8');
    expect(Object.keys(JSON.parse(text))).toEqual(['notebook', 'seed', 'settings', 'metrics', 'claims']);
    expect(JSON.parse(text)).toEqual(r);
    expect(text.endsWith('}\n')).toBe(true);
  });

  it.each([
    [(r: NotebookResults) => ((r as { seed: unknown }).seed = 1.5), '`seed` must be an integer, got 1.5'],
    [(r: NotebookResults) => (r.notebook = 'a/b'), '`notebook` must be a notebook stem like "00_quickstart", got "a/b"'],
    [(r: NotebookResults) => ((r.claims[0] as { holds: unknown }).holds = 'yes'), 'claims[0] ("loss-drops").holds must be a boolean, got "yes"'],
    [(r: NotebookResults) => r.claims.push({ ...r.claims[0]! }), 'claims[1].id "loss-drops" is used twice'],
    [(r: NotebookResults) => (r.metrics.kl = Number.NaN), 'metrics.kl is NaN; JSON cannot hold it'],
    [(r: NotebookResults) => ((r.claims[0] as { paper: unknown }).paper = ''), 'claims[0].paper must be a non-empty string, got ""'],
  ])('rejects invalid results naming the field (%#)', (mutate, message) => {
    const r = valid();
    mutate(r);
    expect(() => writeResults(r, { dir: tmpdir() })).toThrow(`writeResults: ${message}`);
  });
});
