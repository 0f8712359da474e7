// figures/<notebook>/results.json: the machine-readable outcome of a notebook, one per notebook,
// so a reader (or CI) can check every paper claim without opening the notebook.
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
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
  /** Optional: one sentence for a reader on why the claim fails (or holds only with a caveat);
   * the reproduction report shows it beside the verdict. */
  reason?: string;
}

/** How and when a notebook ran; writeResults fills what the notebook does not give. */
export interface RunInfo {
  /** When writeResults ran (ISO 8601, UTC). */
  date: string;
  /** Seconds from the start of the notebook run (scripts/nb.ts, test:jupyter) to writeResults,
   * usually the last cell; absent when no runner said when the run started (a live session). */
  wallSeconds?: number;
  /** The tensor backend (lib/engine's name: webgpu, tensorflow, native, wasm, cpu), when known. */
  backend?: string;
  /** Whether the notebook ran in fast mode (DEEPALIGN_FAST=1). */
  fast: boolean;
  node: string;
  platform: string;
}

export interface NotebookResults {
  /** Notebook stem, e.g. "00_quickstart"; also the folder under figures/. */
  notebook: string;
  seed: number;
  settings: Record<string, unknown>;
  metrics: Record<string, unknown>;
  claims: Claim[];
  /** Written by writeResults (date, wall time, backend); a notebook may set any field itself.
   * Absent from results.json files written before the kit recorded it. */
  run?: Partial<RunInfo>;
}

/** Env var the notebook runners set to the run's start (ms since the epoch) for RunInfo.wallSeconds. */
export const RUN_STARTED_ENV = 'DEEPALIGN_RUN_STARTED_MS';

/**
 * The tensor backend, without importing tfjs: tfjs-core keeps its engine on the global object
 * (`_tfengine`), and lib/engine's `native` backend is tfjs's wasm backend with the kit's addon
 * loaded (build/Release/deepalign_native.node, in Node's module cache).
 */
export function currentBackend(): string | undefined {
  let name: string | undefined;
  try {
    const engine = (globalThis as { _tfengine?: { backendName?: unknown } })._tfengine;
    name = typeof engine?.backendName === 'string' ? engine.backendName : undefined;
  } catch {
    return undefined;
  }
  if (name !== 'wasm') return name;
  try {
    const cache = createRequire(join(process.cwd(), 'noop.js')).cache;
    if (Object.keys(cache).some((file) => /deepalign_native\.node$/.test(file))) return 'native';
  } catch {
    // no module cache: say wasm
  }
  return name;
}

/** RunInfo for a results.json written now. */
function runInfo(given: Partial<RunInfo> | undefined): RunInfo {
  const started = Number(process.env[RUN_STARTED_ENV]);
  const wallSeconds = Number.isFinite(started) && started > 0 ? Math.round((Date.now() - started) / 100) / 10 : undefined;
  const backend = currentBackend();
  const info: RunInfo = {
    date: new Date().toISOString(),
    ...(wallSeconds !== undefined ? { wallSeconds } : {}),
    ...(backend !== undefined ? { backend } : {}),
    fast: process.env.DEEPALIGN_FAST === '1',
    node: process.versions.node,
    platform: `${process.platform}-${process.arch}`,
  };
  return { ...info, ...given };
}

function check(condition: boolean, message: () => string): void {
  if (!condition) throw new Error(`writeResults: ${message()}`);
}

/** A value for an error message; unlike JSON.stringify it never throws (BigInt, cycles) and
 * never hides NaN/Infinity/undefined as null or nothing. */
function show(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number' || value === undefined || typeof value === 'symbol') return String(value);
  if (typeof value === 'function') return `a function${value.name ? ` (${value.name})` : ''}`;
  try {
    return JSON.stringify(value)?.slice(0, 80) ?? String(value);
  } catch {
    return Object.prototype.toString.call(value);
  }
}

const isPlainObject = (value: unknown): value is Record<string, unknown> => {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
};

/**
 * Checks that `value` survives JSON.stringify unchanged: JSON.stringify turns NaN and ±Infinity
 * into null, drops undefined, functions and symbols (or nulls them in arrays), turns a Map or Set
 * into {} and throws on BigInt and cycles, none of which names the field. Arrays, plain objects,
 * strings, booleans, null, valid Dates and finite numbers pass.
 */
function checkJson(value: unknown, path: string, ancestors: object[] = []): void {
  switch (typeof value) {
    case 'number':
      check(Number.isFinite(value), () => `${path} is ${value}; results must be finite JSON numbers (JSON would write null; store a string, or null for a missing value)`);
      return;
    case 'string':
    case 'boolean':
      return;
    case 'bigint':
      check(false, () => `${path} is the BigInt ${show(value)}; JSON cannot hold it (convert with Number() or String())`);
      return;
    case 'undefined':
    case 'function':
    case 'symbol':
      check(false, () => `${path} is ${show(value)}; JSON would drop it (store null for a missing value)`);
      return;
  }
  if (value === null) return;
  const object = value as object;
  check(!ancestors.includes(object), () => `${path} refers back to an enclosing object (a cycle); JSON cannot hold it`);
  const inner = [...ancestors, object];
  if (Array.isArray(object)) {
    // Holes in sparse arrays are visited too: JSON writes them as null.
    for (let i = 0; i < object.length; i++) checkJson(object[i], `${path}[${i}]`, inner);
    return;
  }
  if (object instanceof Date) {
    // JSON writes a Date as its ISO string, and an invalid Date as null.
    check(!Number.isNaN(object.getTime()), () => `${path} is an invalid Date; JSON would write null`);
    return;
  }
  check(
    isPlainObject(object),
    () =>
      `${path} is a ${object.constructor?.name ?? 'non-plain object'}; JSON would not keep its contents (store an array or a plain object${ArrayBuffer.isView(object) ? ', e.g. Array.from(...)' : ''})`,
  );
  for (const [key, child] of Object.entries(object)) checkJson(child, `${path}.${key}`, inner);
}

/** Throws a message naming the field when `results` does not have the documented shape. */
export function validateResults(results: NotebookResults): void {
  check(typeof results === 'object' && results !== null, () => `expected an object, got ${show(results)}`);
  check(typeof results.notebook === 'string' && /^[A-Za-z0-9_.-]+$/.test(results.notebook), () => `\`notebook\` must be a notebook stem like "00_quickstart", got ${show(results.notebook)}`);
  check(Number.isInteger(results.seed), () => `\`seed\` must be an integer, got ${show(results.seed)}`);
  for (const key of ['settings', 'metrics'] as const) {
    const value = results[key];
    check(typeof value === 'object' && value !== null && !Array.isArray(value), () => `\`${key}\` must be an object, got ${show(value)}`);
  }
  check(Array.isArray(results.claims), () => `\`claims\` must be an array, got ${show(results.claims)}`);
  const ids = new Set<string>();
  results.claims.forEach((claim: unknown, i) => {
    check(isPlainObject(claim), () => `claims[${i}] must be an object { id, paper, expected, observed, holds }, got ${show(claim)}`);
    const c = claim as Claim;
    for (const field of ['id', 'paper'] as const) {
      check(typeof c[field] === 'string' && c[field].length > 0, () => `claims[${i}].${field} must be a non-empty string, got ${show(c[field])}`);
    }
    check(c.expected !== undefined, () => `claims[${i}] ("${c.id}").expected is missing`);
    check(c.observed !== undefined, () => `claims[${i}] ("${c.id}").observed is missing`);
    check(typeof c.holds === 'boolean', () => `claims[${i}] ("${c.id}").holds must be a boolean, got ${show(c.holds)}`);
    check(!ids.has(c.id), () => `claims[${i}].id "${c.id}" is used twice`);
    ids.add(c.id);
    checkJson(c.expected, `claims[${i}].expected`);
    checkJson(c.observed, `claims[${i}].observed`);
    check(c.reason === undefined || (typeof c.reason === 'string' && c.reason.length > 0), () => `claims[${i}] ("${c.id}").reason must be a non-empty string when given, got ${show(c.reason)}`);
  });
  if (results.run !== undefined) {
    check(isPlainObject(results.run), () => `\`run\` must be an object { date, wallSeconds, backend, ... } when given, got ${show(results.run)}`);
    checkJson(results.run, 'run');
  }
  checkJson(results.settings, 'settings');
  checkJson(results.metrics, 'metrics');
}

/** Where writeResults puts a notebook's results. */
export function resultsPath(notebook: string, dir: string = figuresDir()): string {
  return join(reportPath(notebook, dir, 'writeResults'), 'results.json');
}

/**
 * Validates and writes `<dir>/<notebook>/results.json` (keys in the documented order, 2-space
 * indent, trailing newline, atomically) and logs the path and how many claims hold. `run` (date,
 * wall time, backend, fast mode, node, platform) is added last; a claim's `reason` is kept when
 * given. Files written before either existed still read the same way.
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
    claims: claims.map(({ id, paper, expected, observed, holds, reason }) => ({ id, paper, expected, observed, holds, ...(reason !== undefined ? { reason } : {}) })),
    run: runInfo(results.run),
  };
  writeFileAtomic(path, JSON.stringify(ordered, null, 2) + '\n');
  console.log(`results: wrote ${displayPath(path)} (${claims.filter((c) => c.holds).length}/${claims.length} claims hold)`);
}
