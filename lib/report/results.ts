// figures/<notebook>/results.json: the machine-readable outcome of a notebook, one per notebook,
// so a reader (or CI) can check every paper claim without opening the notebook.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { displayPath, figuresDir, reportPath } from './paths.js';

/** One claim from a paper, checked by a notebook. */
export interface Claim {
  /** Short stable id, e.g. "shallow-alignment-kl-concentrated". */
  id: string;
  /** Which paper and where, e.g. "Qi et al. 2025, Fig. 1". */
  paper: string;
  /** What the paper reports, in words or numbers. */
  expected: string | number | boolean | Record<string, unknown>;
  /** What this run measured. */
  observed: string | number | boolean | Record<string, unknown>;
  holds: boolean;
}

export interface NotebookResults {
  /** Notebook stem, e.g. "00_quickstart"; also the folder under figures/. */
  notebook: string;
  seed: number;
  settings: Record<string, unknown>;
  metrics: Record<string, unknown>;
  claims: Claim[];
}

function check(condition: boolean, message: () => string): void {
  if (!condition) throw new Error(`writeResults: ${message()}`);
}

/** Throws a message naming the field when `results` does not have the documented shape. */
export function validateResults(results: NotebookResults): void {
  check(typeof results === 'object' && results !== null, () => `expected an object, got ${String(results)}`);
  check(typeof results.notebook === 'string' && /^[A-Za-z0-9_.-]+$/.test(results.notebook), () => `\`notebook\` must be a notebook stem like "00_quickstart", got ${JSON.stringify(results.notebook)}`);
  check(Number.isInteger(results.seed), () => `\`seed\` must be an integer, got ${JSON.stringify(results.seed)}`);
  for (const key of ['settings', 'metrics'] as const) {
    const value = results[key];
    check(typeof value === 'object' && value !== null && !Array.isArray(value), () => `\`${key}\` must be an object, got ${JSON.stringify(value)}`);
  }
  check(Array.isArray(results.claims), () => `\`claims\` must be an array, got ${JSON.stringify(results.claims)}`);
  const ids = new Set<string>();
  results.claims.forEach((claim, i) => {
    for (const field of ['id', 'paper'] as const) {
      check(typeof claim[field] === 'string' && claim[field].length > 0, () => `claims[${i}].${field} must be a non-empty string, got ${JSON.stringify(claim[field])}`);
    }
    check(claim.expected !== undefined, () => `claims[${i}] ("${claim.id}").expected is missing`);
    check(claim.observed !== undefined, () => `claims[${i}] ("${claim.id}").observed is missing`);
    check(typeof claim.holds === 'boolean', () => `claims[${i}] ("${claim.id}").holds must be a boolean, got ${JSON.stringify(claim.holds)}`);
    check(!ids.has(claim.id), () => `claims[${i}].id "${claim.id}" is used twice`);
    ids.add(claim.id);
  });
  // NaN/Infinity would silently become null in JSON.
  const walk = (value: unknown, path: string): void => {
    if (typeof value === 'number') check(Number.isFinite(value), () => `${path} is ${value}; JSON cannot hold it (store a string or null)`);
    else if (Array.isArray(value)) value.forEach((v, i) => walk(v, `${path}[${i}]`));
    else if (value && typeof value === 'object') for (const [k, v] of Object.entries(value)) walk(v, `${path}.${k}`);
  };
  walk(results.metrics, 'metrics');
  walk(results.settings, 'settings');
}

/** Where writeResults puts a notebook's results. */
export function resultsPath(notebook: string, dir: string = figuresDir()): string {
  return join(reportPath(notebook, dir, 'writeResults'), 'results.json');
}

/**
 * Validates and writes `<dir>/<notebook>/results.json` (keys in the documented order, 2-space
 * indent, trailing newline) and logs the path and how many claims hold.
 */
export function writeResults(results: NotebookResults, options: { dir?: string } = {}): void {
  validateResults(results);
  const path = resultsPath(results.notebook, options.dir);
  mkdirSync(dirname(path), { recursive: true });
  const { notebook, seed, settings, metrics, claims } = results;
  const ordered = {
    notebook,
    seed,
    settings,
    metrics,
    claims: claims.map(({ id, paper, expected, observed, holds }) => ({ id, paper, expected, observed, holds })),
  };
  writeFileSync(path, JSON.stringify(ordered, null, 2) + '\n');
  console.log(`results: wrote ${displayPath(path)} (${claims.filter((c) => c.holds).length}/${claims.length} claims hold)`);
}
