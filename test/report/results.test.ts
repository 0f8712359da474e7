import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { RUN_STARTED_ENV, resultsPath, writeResults, type NotebookResults } from '../../lib/report/index.js';

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
    expect(Object.keys(JSON.parse(text))).toEqual(['notebook', 'seed', 'settings', 'metrics', 'claims', 'run']);
    const { run, ...rest } = JSON.parse(text) as NotebookResults;
    expect(rest).toEqual(r);
    // How the notebook ran, added last (files without it still read the same way).
    expect(Object.keys(run!)).toEqual(expect.arrayContaining(['date', 'fast', 'node', 'platform']));
    expect(Date.now() - Date.parse(run!.date!)).toBeLessThan(60_000);
    expect(text.endsWith('}\n')).toBe(true);
  });

  it.each([
    [(r: NotebookResults) => ((r as { seed: unknown }).seed = 1.5), '`seed` must be an integer, got 1.5'],
    [(r: NotebookResults) => (r.notebook = 'a/b'), '`notebook` must be a notebook stem like "00_quickstart", got "a/b"'],
    [(r: NotebookResults) => ((r.claims[0] as { holds: unknown }).holds = 'yes'), 'claims[0] ("loss-drops").holds must be a boolean, got "yes"'],
    [(r: NotebookResults) => r.claims.push({ ...r.claims[0]! }), 'claims[1].id "loss-drops" is used twice'],
    [(r: NotebookResults) => (r.metrics.kl = Number.NaN), 'metrics.kl is NaN; results must be finite JSON numbers'],
    [(r: NotebookResults) => ((r.claims[0] as { paper: unknown }).paper = ''), 'claims[0].paper must be a non-empty string, got ""'],
    [(r: NotebookResults) => ((r as { seed: unknown }).seed = Number.NaN), '`seed` must be an integer, got NaN'],
    // Claims are checked like metrics: JSON.stringify would turn these into null without a word.
    [(r: NotebookResults) => (r.claims[0]!.observed = Number.NaN), 'claims[0].observed is NaN; results must be finite JSON numbers'],
    [(r: NotebookResults) => (r.claims[0]!.observed = Number.POSITIVE_INFINITY), 'claims[0].observed is Infinity; results must be finite JSON numbers'],
    [(r: NotebookResults) => (r.claims[0]!.expected = { lo: Number.NaN, hi: 1 }), 'claims[0].expected.lo is NaN'],
    [(r: NotebookResults) => (r.claims[0]!.observed = { perLayer: [1, -Infinity] }), 'claims[0].observed.perLayer[1] is -Infinity'],
    [
      (r: NotebookResults) => r.claims.push({ ...r.claims[0]!, id: 'b' }, { ...r.claims[0]!, id: 'c', observed: { 'T=1': Number.NaN } }),
      'claims[2].observed.T=1 is NaN; results must be finite JSON numbers',
    ],
    [(r: NotebookResults) => ((r.claims as unknown[])[0] = null), 'claims[0] must be an object { id, paper, expected, observed, holds }, got null'],
    [(r: NotebookResults) => ((r.claims[0] as { id: unknown }).id = 7n), 'claims[0].id must be a non-empty string, got 7n'],
    [(r: NotebookResults) => (r.claims[0]!.observed = { n: 3n } as unknown as Record<string, unknown>), 'claims[0].observed.n is the BigInt 3n; JSON cannot hold it'],
    [(r: NotebookResults) => (r.metrics.tokens = 10n), 'metrics.tokens is the BigInt 10n'],
    [(r: NotebookResults) => (r.metrics.later = undefined), 'metrics.later is undefined; JSON would drop it'],
    [(r: NotebookResults) => (r.settings.schedule = (t: number) => t), 'settings.schedule is a function; JSON would drop it'],
    [(r: NotebookResults) => (r.metrics.perLayer = [0.1, undefined]), 'metrics.perLayer[1] is undefined'],
    [(r: NotebookResults) => (r.metrics.byLayer = new Map([[0, 1]])), 'metrics.byLayer is a Map; JSON would not keep its contents'],
    [(r: NotebookResults) => (r.metrics.kl = new Float32Array([1, 2])), 'metrics.kl is a Float32Array; JSON would not keep its contents (store an array or a plain object, e.g. Array.from(...))'],
    [(r: NotebookResults) => (r.metrics.self = r.metrics), 'metrics.self refers back to an enclosing object (a cycle)'],
  ])('rejects invalid results naming the field (%#)', (mutate, message) => {
    const r = valid();
    mutate(r);
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-results-'));
    expect(() => writeResults(r, { dir })).toThrow(`writeResults: ${message}`);
    expect(existsSync(resultsPath('00_quickstart', dir))).toBe(false);
  });

  it('accepts null, nested arrays and objects, Dates and the same object twice (not a cycle)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-results-'));
    vi.spyOn(console, 'log').mockImplementation(() => {});
    const r = valid();
    const shared = { a: 1 };
    r.metrics = { missing: null, nested: [[1, 2], { x: [3] }], left: shared, right: shared, at: new Date(0) };
    r.claims[0]!.expected = { lo: 0, hi: 2 };
    writeResults(r, { dir });
    expect(JSON.parse(readFileSync(resultsPath('00_quickstart', dir), 'utf8')).metrics).toEqual({
      missing: null,
      nested: [[1, 2], { x: [3] }],
      left: { a: 1 },
      right: { a: 1 },
      at: '1970-01-01T00:00:00.000Z',
    });
  });

  it('records the run (date, wall time from the runner\'s start, fast mode) and keeps a claim\'s reason; the notebook\'s own run fields win', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-results-'));
    vi.spyOn(console, 'log').mockImplementation(() => {});
    vi.stubEnv(RUN_STARTED_ENV, String(Date.now() - 12_345));
    vi.stubEnv('DEEPALIGN_FAST', '1');
    try {
      const r = valid();
      r.claims.push({ id: 'b', paper: 'p', expected: { rule: 'x > 1' }, observed: 0.5, holds: false, reason: 'x is 0.5 here, below 1' });
      r.run = { backend: 'cpu' };
      writeResults(r, { dir });
    } finally {
      vi.unstubAllEnvs();
    }
    const written = JSON.parse(readFileSync(resultsPath('00_quickstart', dir), 'utf8')) as NotebookResults;
    expect(written.claims[0]).not.toHaveProperty('reason');
    expect(Object.keys(written.claims[1]!)).toEqual(['id', 'paper', 'expected', 'observed', 'holds', 'reason']);
    expect(written.claims[1]!.reason).toBe('x is 0.5 here, below 1');
    expect(written.run!.backend).toBe('cpu');
    expect(written.run!.fast).toBe(true);
    expect(written.run!.wallSeconds).toBeGreaterThanOrEqual(12.3);
    expect(written.run!.wallSeconds).toBeLessThan(60);
  });

  it('rejects an empty reason and a run that is not an object', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-results-'));
    const r = valid();
    r.claims[0]!.reason = '';
    expect(() => writeResults(r, { dir })).toThrow('writeResults: claims[0] ("loss-drops").reason must be a non-empty string when given, got ""');
    const r2 = valid();
    (r2 as { run: unknown }).run = 'today';
    expect(() => writeResults(r2, { dir })).toThrow('writeResults: `run` must be an object');
  });
});
