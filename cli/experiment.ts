// The shape every `deepalign <experiment>` shares: typed flags (parsed, checked and described in
// --help from one list), a resumable journal of finished units, progress and logging, and
// results.json. Experiments (cli/experiments/*.ts) declare flags and a run(ctx); cli/main.ts does
// the rest, so every experiment gets the same error messages, --help layout and resume rules.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../lib/io/atomic.js';
import { progress as progressBar } from '../lib/report/progress.js';
import { currentBackend, validateResults, type Claim, type NotebookResults } from '../lib/report/results.js';

// ---------------------------------------------------------------------------------------------
// the contract (cli/main.ts and every experiment code against these)

export type FlagType = 'string' | 'number' | 'int' | 'boolean' | 'string-list' | 'int-list' | 'number-list';

export interface FlagSpec {
  /** Without dashes, kebab-case: 'max-new-tokens'. */
  name: string;
  type: FlagType;
  help: string;
  /** Shown in --help; filled in when the flag is absent. */
  default?: unknown;
  required?: boolean;
  /** For 'string' / 'string-list'. */
  choices?: readonly string[];
}

/** Resumable units: <outDir>/journal.jsonl, one JSON line {key, value} appended (and fsync'd) per finished unit. */
export interface Journal {
  has(key: string): boolean;
  get<T>(key: string): T | undefined;
  put<T>(key: string, value: T): void;
  /** The stored value for key, or compute it, store it, return it. A re-run after an interruption skips finished units. */
  once<T>(key: string, compute: () => Promise<T>): Promise<T>;
}

export interface Progress {
  tick(n?: number): void;
  done(): void;
}

export interface ExperimentContext {
  /** Parsed and validated flags (kebab-case keys), defaults filled in. */
  flags: Record<string, any>;
  /** --out (default runs/<experiment>), created; results.json, figures, journal.jsonl and checkpoints go here. */
  outDir: string;
  journal: Journal;
  /** A progress bar on stderr (silent when not a TTY or with --quiet). */
  progress(label: string, total: number): Progress;
  log(message: string): void;
}

export interface Experiment {
  /** 'prefill' */
  name: string;
  /** One line for `deepalign --help`. */
  summary: string;
  /** Experiment-specific flags; the common flags (cli/resolve.ts) are added by the experiment itself by spreading them in. */
  flags: FlagSpec[];
  /** Runs the same lib functions as the notebooks, writes <outDir>/results.json and its figures, and returns the results object. */
  run(ctx: ExperimentContext): Promise<unknown>;
}

// ---------------------------------------------------------------------------------------------
// errors the CLI maps to exit codes

/** A bad command line (exit code 2): the message names the flag, the value and what was expected. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Thrown by the journal once --stop-after new units are stored; the CLI exits 0 and a re-run continues. */
export class StopRequested extends Error {
  constructor(readonly units: number) {
    super(`stopped after ${units} new unit${units === 1 ? '' : 's'} (--stop-after); run the same command again to continue`);
    this.name = 'StopRequested';
  }
}

/** Flags cli/main.ts adds to every experiment: they steer this invocation, not what it computes. */
export const RUN_FLAGS: FlagSpec[] = [
  { name: 'fresh', type: 'boolean', default: false, help: 'ignore and delete the journal (and checkpoints/) in --out: start over instead of resuming' },
  { name: 'stop-after', type: 'int', help: 'stop (exit 0) after this many new units are journaled; a re-run resumes (for testing resumption)' },
];

/** Flags that may differ between a run and its resumption: where output goes and how it is shown, never what is computed. */
export const RESUME_NEUTRAL_FLAGS: readonly string[] = ['fresh', 'stop-after', 'quiet', 'out', 'judge-cache', 'judge-concurrency', 'help'];

// ---------------------------------------------------------------------------------------------
// flag specs: checks and overrides

const KEBAB = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;

/** Throws (a programming error, not a usage error) unless the specs are well formed and their names unique. */
export function checkFlagSpecs(specs: readonly FlagSpec[], where: string): void {
  const seen = new Set<string>();
  for (const s of specs) {
    if (!KEBAB.test(s.name)) throw new Error(`${where}: flag name ${JSON.stringify(s.name)} must be kebab-case without dashes in front ('max-new-tokens')`);
    if (seen.has(s.name)) throw new Error(`${where}: flag --${s.name} is declared twice (a common flag list spread in twice?)`);
    seen.add(s.name);
    if (s.choices && s.type !== 'string' && s.type !== 'string-list') throw new Error(`${where}: flag --${s.name} has choices but is of type ${s.type} (choices are for string and string-list)`);
    if (s.default !== undefined) {
      try {
        checkValue(s, s.default);
      } catch (e) {
        throw new Error(`${where}: the default of --${s.name} is invalid: ${(e as Error).message}`);
      }
    }
  }
}

/** The same specs with other defaults (an experiment's own, e.g. notebook 07's 4 phrasings per task). */
export function withDefaults(specs: readonly FlagSpec[], defaults: Record<string, unknown>): FlagSpec[] {
  const names = new Set(specs.map((s) => s.name));
  for (const name of Object.keys(defaults)) if (!names.has(name)) throw new Error(`withDefaults: no flag --${name} to set a default for`);
  return specs.map((s) => (s.name in defaults ? { ...s, default: defaults[s.name] } : s));
}

function checkValue(spec: FlagSpec, value: unknown): void {
  const isList = spec.type.endsWith('-list');
  const items = isList ? (Array.isArray(value) ? value : [Symbol('not a list')]) : [value];
  for (const item of items) {
    const ok =
      spec.type === 'boolean' ? typeof item === 'boolean'
        : spec.type === 'int' || spec.type === 'int-list' ? Number.isInteger(item)
          : spec.type === 'number' || spec.type === 'number-list' ? typeof item === 'number' && Number.isFinite(item)
            : typeof item === 'string';
    if (!ok) throw new Error(`expected ${spec.type}, got ${String(JSON.stringify(value))}`);
    if (spec.choices && !spec.choices.includes(item as string)) throw new Error(`${JSON.stringify(item)} is not one of ${spec.choices.join(', ')}`);
  }
}

// ---------------------------------------------------------------------------------------------
// parsing

/** Edit distance, for "did you mean". */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = up;
    }
  }
  return row[b.length];
}

/** The known name nearest to `name` (a prefix match counts as near), or null when nothing is close. */
export function nearestName(name: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestScore = Infinity;
  for (const k of known) {
    const score = k.startsWith(name) || name.startsWith(k) ? 0.5 : distance(name, k);
    if (score < bestScore) [best, bestScore] = [k, score];
  }
  return best !== null && bestScore <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

const EXAMPLES: Record<FlagType, string> = {
  string: 'text', number: 'a number, e.g. 0.5', int: 'an integer, e.g. 8', boolean: 'true or false',
  'string-list': 'comma-separated text, e.g. a,b (a literal comma as \\,)', 'int-list': 'comma-separated integers, e.g. 0,1,2', 'number-list': 'comma-separated numbers, e.g. 0.5,1',
};

/** Splits a list value on commas, keeping `\,` as a literal comma. */
function splitList(text: string): string[] {
  const items: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === '\\' && text[i + 1] === ',') {
      current += ',';
      i++;
    } else if (text[i] === ',') {
      items.push(current);
      current = '';
    } else current += text[i];
  }
  items.push(current);
  return items.map((s) => s.trim());
}

function parseScalar(spec: FlagSpec, text: string, where: string): unknown {
  const bad = (what: string) => new UsageError(`${where}: --${spec.name}: ${JSON.stringify(text)} is not ${what} (expected ${spec.type}: ${EXAMPLES[spec.type]})`);
  switch (spec.type) {
    case 'int':
    case 'int-list':
      if (!/^[+-]?\d+$/.test(text.trim())) throw bad('an integer');
      return Number(text.trim());
    case 'number':
    case 'number-list': {
      const n = Number(text.trim());
      if (text.trim() === '' || !Number.isFinite(n)) throw bad('a finite number');
      return n;
    }
    case 'boolean':
      if (/^(true|1|yes)$/i.test(text.trim())) return true;
      if (/^(false|0|no)$/i.test(text.trim())) return false;
      throw bad('a boolean');
    default:
      return text;
  }
}

function parseValue(spec: FlagSpec, text: string, where: string): unknown {
  const values = spec.type.endsWith('-list')
    ? splitList(text).map((item, i) => {
        if (item === '') throw new UsageError(`${where}: --${spec.name}: item ${i + 1} of ${JSON.stringify(text)} is empty (expected ${spec.type}: ${EXAMPLES[spec.type]})`);
        return parseScalar(spec, item, where);
      })
    : [parseScalar(spec, text, where)];
  if (spec.choices) {
    for (const v of values) {
      if (!spec.choices.includes(v as string)) {
        const near = nearestName(v as string, spec.choices);
        throw new UsageError(`${where}: --${spec.name}: ${JSON.stringify(v)} is not one of ${spec.choices.join(', ')}${near ? ` (did you mean ${near}?)` : ''}`);
      }
    }
  }
  return spec.type.endsWith('-list') ? values : values[0];
}

export interface ParsedArgs {
  flags: Record<string, any>;
  /** Flags given on the command line (the others hold their defaults). */
  given: Set<string>;
  help: boolean;
}

/**
 * Parses `--name value`, `--name=value`, `--flag` / `--no-flag` (booleans) against `specs`. List
 * flags may be repeated (their items add up); any other flag given twice is an error. Defaults are
 * filled in; a missing required flag, an unknown flag (with the nearest known name), a value of the
 * wrong type or outside the choices is a UsageError naming the flag, the value and what was expected.
 * `--help` anywhere sets `help` and skips the required-flag check.
 */
export function parseFlags(specs: readonly FlagSpec[], argv: readonly string[], where: string): ParsedArgs {
  const byName = new Map(specs.map((s) => [s.name, s] as [string, FlagSpec]));
  const flags: Record<string, any> = {};
  const given = new Set<string>();
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--') || arg === '--') {
      throw new UsageError(`${where}: unexpected argument ${JSON.stringify(arg)} (flags start with --; see --help)`);
    }
    const eq = arg.indexOf('=');
    let name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    let inline: string | undefined = eq >= 0 ? arg.slice(eq + 1) : undefined;
    let spec = byName.get(name);
    if (!spec && name.startsWith('no-') && byName.get(name.slice(3))?.type === 'boolean' && inline === undefined) {
      name = name.slice(3);
      spec = byName.get(name);
      inline = 'false';
    }
    if (!spec) {
      const near = nearestName(name, [...byName.keys()]);
      throw new UsageError(`${where}: unknown flag --${name}${near ? `; did you mean --${near}?` : ''} (see deepalign ${where.replace(/^deepalign /, '')} --help)`);
    }
    let text: string;
    if (inline !== undefined) text = inline;
    else if (spec.type === 'boolean') text = 'true';
    else {
      const next = argv[i + 1];
      // A value may start with '-' only as a negative number ("--seed -1").
      if (next === undefined || (next.startsWith('-') && !/^-\d/.test(next))) {
        throw new UsageError(`${where}: --${name} needs a value (expected ${spec.type}: ${EXAMPLES[spec.type]}; write --${name}=value for a value starting with -)`);
      }
      text = next;
      i++;
    }
    const value = parseValue(spec, text, where);
    if (given.has(name)) {
      if (!spec.type.endsWith('-list')) throw new UsageError(`${where}: --${name} is given twice (${JSON.stringify(flags[name])} and ${JSON.stringify(value)}); give it once`);
      flags[name] = [...flags[name], ...(value as unknown[])];
    } else flags[name] = value;
    given.add(name);
  }
  for (const spec of specs) {
    if (given.has(spec.name)) continue;
    if (spec.required && !help) {
      throw new UsageError(`${where}: missing required flag --${spec.name} (${spec.type}: ${spec.help})`);
    }
    if (spec.default !== undefined) flags[spec.name] = Array.isArray(spec.default) ? [...spec.default] : spec.default;
  }
  return { flags, given, help };
}

// ---------------------------------------------------------------------------------------------
// help

function showDefault(value: unknown): string {
  if (Array.isArray(value)) return value.map((v) => (typeof v === 'string' ? v.replace(/,/g, '\\,') : String(v))).join(',');
  return typeof value === 'string' ? (value === '' ? '""' : value) : String(value);
}

/** Wraps `text` to `width` columns, every line after the first indented by `indent`. */
function wrap(text: string, width: number, indent: number): string {
  const words = text.split(/\s+/).filter((w) => w !== '');
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line !== '' && line.length + 1 + w.length > width) {
      lines.push(line);
      line = w;
    } else line = line === '' ? w : `${line} ${w}`;
  }
  if (line !== '') lines.push(line);
  return lines.join(`\n${' '.repeat(indent)}`);
}

/** The flag table of `deepalign <experiment> --help`: name, type, help, choices, default. */
export function formatFlagHelp(specs: readonly FlagSpec[]): string {
  const heads = specs.map((s) => `  --${s.name} <${s.type}>`);
  const col = Math.min(40, Math.max(...heads.map((h) => h.length)) + 2);
  return specs
    .map((s, i) => {
      const notes = [
        s.choices ? `one of: ${s.choices.join(', ')}` : '',
        s.required ? 'required' : s.default !== undefined ? `default: ${showDefault(s.default)}` : '',
      ].filter((n) => n !== '');
      const text = `${s.help}${notes.length ? ` [${notes.join('; ')}]` : ''}`;
      const head = heads[i].length + 2 > col ? `${heads[i]}\n${' '.repeat(col)}` : heads[i].padEnd(col);
      return head + wrap(text, 100 - col, col);
    })
    .join('\n');
}

// ---------------------------------------------------------------------------------------------
// the journal

/** What the journal did in this invocation, for the summary line (and the resume tests). */
export interface JournalStats {
  /** Units found in the journal and reused. */
  reused: number;
  /** Units computed and stored in this invocation. */
  computed: number;
}

export interface OpenJournalOptions {
  /** The experiment and the flags that determine its results (RESUME_NEUTRAL_FLAGS are left out). */
  experiment: string;
  flags: Record<string, unknown>;
  /** Delete an existing journal (and checkpoints/) first. */
  fresh?: boolean;
  /** Throw StopRequested after this many new units. */
  stopAfter?: number;
}

export const JOURNAL_FILE = 'journal.jsonl';
const HEADER_KEY = '#run';

/** Flags that determine results: everything but RESUME_NEUTRAL_FLAGS and absent values. */
export function resumeFlags(flags: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(flags).filter(([k, v]) => v !== undefined && !RESUME_NEUTRAL_FLAGS.includes(k)).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** JSON for the journal: a non-finite number (which JSON would turn into null) is an error naming the key. */
function journalJson(value: unknown, key: string): string {
  return JSON.stringify(value, function (this: unknown, field: string, v: unknown) {
    if (typeof v === 'number' && !Number.isFinite(v)) throw new Error(`journal: unit "${key}": field ${JSON.stringify(field)} is ${v}; journaled values must be finite numbers (JSON would store null)`);
    return v;
  });
}

const showFlag = (value: unknown) => (value === undefined ? '(not given)' : Array.isArray(value) ? value.join(',') : String(value));

/**
 * Opens (or creates) <outDir>/journal.jsonl. Its first line records the experiment and the flags
 * that determine the results; resuming with other values is a UsageError naming the flag that
 * differs (or --fresh starts over). A last line cut short by a crash is dropped: that unit is
 * computed again.
 */
export function openJournal(outDir: string, options: OpenJournalOptions): Journal & { stats: JournalStats; file: string; readonly size: number } {
  const file = path.join(outDir, JOURNAL_FILE);
  if (options.fresh) {
    fs.rmSync(file, { force: true });
    fs.rmSync(path.join(outDir, 'checkpoints'), { recursive: true, force: true });
  }
  const header = { experiment: options.experiment, flags: resumeFlags(options.flags) };
  const entries = new Map<string, unknown>();
  if (fs.existsSync(file)) {
    let text = fs.readFileSync(file, 'utf8');
    // Every record is written as one line with its newline: text after the last newline is a line
    // a crash cut short. Drop it (that unit is computed again) so the next append starts cleanly.
    const cut = text.lastIndexOf('\n') + 1;
    if (cut < text.length) {
      text = text.slice(0, cut);
      fs.truncateSync(file, Buffer.byteLength(text));
    }
    let stored: typeof header | undefined;
    text.split('\n').forEach((line, i) => {
      if (line.trim() === '') return;
      let record: { key?: unknown; value?: unknown };
      try {
        record = JSON.parse(line);
      } catch {
        throw new Error(`${file}: line ${i + 1} is not JSON (the journal is damaged; delete it, or pass --fresh to start over)`);
      }
      if (typeof record?.key !== 'string') throw new Error(`${file}: line ${i + 1} has no string "key" (expected {key, value} records; pass --fresh to start over)`);
      if (i === 0 || record.key === HEADER_KEY) {
        if (i !== 0 || record.key !== HEADER_KEY) throw new Error(`${file}: line ${i + 1}: the run header {"key":"${HEADER_KEY}",...} must be the first line and only there (not a deepalign journal? pass --fresh to start over)`);
        stored = record.value as typeof header;
      } else entries.set(record.key, record.value);
    });
    // A journal with no finished unit holds nothing to lose: another command line simply starts over.
    if (entries.size > 0) checkHeader(file, stored, header);
    else fs.rmSync(file, { force: true });
  }
  fs.mkdirSync(outDir, { recursive: true });
  const append = (line: string) => {
    const fd = fs.openSync(file, 'a');
    try {
      fs.writeSync(fd, line + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  };
  // The header is written with the first unit, so a command line that fails before finishing one
  // (a missing flag found late, a model that does not load) leaves no journal to get in the way.
  let headerWritten = fs.existsSync(file);
  const stats: JournalStats = { reused: 0, computed: 0 };
  const journal = {
    file,
    stats,
    /** Units stored so far (read back and computed). */
    get size() {
      return entries.size;
    },
    has: (key: string) => entries.has(key),
    get: <T>(key: string) => entries.get(key) as T | undefined,
    put<T>(key: string, value: T): void {
      if (key === HEADER_KEY) throw new Error(`journal: "${HEADER_KEY}" is reserved for the run header`);
      const line = journalJson({ key, value }, key);
      if (!headerWritten) {
        append(JSON.stringify({ key: HEADER_KEY, value: header }));
        headerWritten = true;
      }
      append(line);
      // Store what a resumed run will read back (JSON drops undefined fields), so both runs see the same values.
      entries.set(key, JSON.parse(line).value);
      stats.computed++;
      if (options.stopAfter !== undefined && stats.computed >= options.stopAfter) throw new StopRequested(stats.computed);
    },
    async once<T>(key: string, compute: () => Promise<T>): Promise<T> {
      if (entries.has(key)) {
        stats.reused++;
        return entries.get(key) as T;
      }
      const value = await compute();
      journal.put(key, value);
      return entries.get(key) as T;
    },
  };
  return journal;
}

function checkHeader(file: string, stored: { experiment?: string; flags?: Record<string, unknown> } | undefined, now: { experiment: string; flags: Record<string, unknown> }): void {
  if (stored?.experiment !== now.experiment) {
    throw new UsageError(`${file} belongs to a \`${stored?.experiment}\` run, not \`${now.experiment}\`; use another --out, or pass --fresh to start over there`);
  }
  const names = [...new Set([...Object.keys(stored.flags ?? {}), ...Object.keys(now.flags)])].sort();
  const differ = names.filter((n) => JSON.stringify(stored.flags?.[n]) !== JSON.stringify(now.flags[n]));
  if (differ.length > 0) {
    const list = differ.map((n) => `--${n} was ${showFlag(stored.flags?.[n])}, now ${showFlag(now.flags[n])}`).join('; ');
    throw new UsageError(`cannot resume ${file} with different flags: ${list}. Re-run with the journal's flags to continue, use another --out, or pass --fresh to start over`);
  }
}

// ---------------------------------------------------------------------------------------------
// progress, logging and output

/** A progress bar on stderr; silent when stderr is not a terminal or `quiet`. */
export function stderrProgress(label: string, total: number, quiet: boolean): Progress {
  const bar = progressBar(total, { label, mode: quiet || !process.stderr.isTTY ? 'silent' : 'tty' });
  return { tick: (n = 1) => bar.tick(n), done: () => bar.done() };
}

type Cell = string | number | boolean | null | undefined;

/** A plain-text table with aligned columns (numbers right-aligned), for stdout. */
export function formatTable(rows: readonly Record<string, Cell>[]): string {
  if (rows.length === 0) return '(no rows)';
  const columns = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const text = (v: Cell) => (v === null || v === undefined ? '' : typeof v === 'number' && !Number.isInteger(v) ? String(Number(v.toPrecision(4))) : String(v));
  const cells = [columns, ...rows.map((r) => columns.map((c) => text(r[c])))];
  const widths = columns.map((_, j) => Math.max(...cells.map((r) => r[j].length)));
  const numeric = columns.map((c) => rows.every((r) => typeof r[c] === 'number' || r[c] == null));
  const line = (r: string[]) => r.map((c, j) => (numeric[j] ? c.padStart(widths[j]) : c.padEnd(widths[j]))).join('  ').trimEnd();
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

/** Writes a table (with an optional title line) to stdout. */
export function printTable(rows: readonly Record<string, Cell>[], title?: string): void {
  process.stdout.write(`${title ? `${title}\n` : ''}${formatTable(rows)}\n\n`);
}

// ---------------------------------------------------------------------------------------------
// results.json

/** Env var cli/main.ts sets to the invocation's start (ms since the epoch), for run.wallSeconds. */
export const CLI_STARTED_ENV = 'DEEPALIGN_CLI_STARTED_MS';

export interface ExperimentResults {
  /** The experiment's name (results.json's `notebook` field: the reproduction report's key). */
  experiment: string;
  seed: number;
  /** Default: the flags. */
  settings?: Record<string, unknown>;
  metrics: Record<string, unknown>;
  claims?: Claim[];
}

/** The flags as JSON-safe settings (absent flags left out). */
export function flagSettings(flags: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined));
}

/**
 * Validates (lib/report's validateResults: nothing JSON would silently drop or null) and writes
 * <outDir>/results.json atomically, in the notebooks' layout { notebook, seed, settings, metrics,
 * claims, run }, `run` holding the date, wall time, backend and the command line. Returns its path.
 */
export function writeExperimentResults(ctx: Pick<ExperimentContext, 'outDir' | 'flags' | 'log'>, results: ExperimentResults): string {
  const started = Number(process.env[CLI_STARTED_ENV]);
  const backend = currentBackend();
  const full: NotebookResults = {
    notebook: results.experiment, seed: results.seed, settings: results.settings ?? flagSettings(ctx.flags), metrics: results.metrics, claims: results.claims ?? [],
    run: {
      date: new Date().toISOString(),
      ...(Number.isFinite(started) && started > 0 ? { wallSeconds: Math.round((Date.now() - started) / 100) / 10 } : {}),
      ...(backend !== undefined ? { backend } : {}),
      fast: false, node: process.versions.node, platform: `${process.platform}-${process.arch}`,
    },
  };
  validateResults(full);
  const run = { ...full.run, command: ['deepalign', ...process.argv.slice(2)].join(' ') };
  const ordered = { notebook: full.notebook, seed: full.seed, settings: full.settings, metrics: full.metrics, claims: full.claims, run };
  const file = path.join(ctx.outDir, 'results.json');
  fs.mkdirSync(ctx.outDir, { recursive: true });
  writeFileAtomic(file, JSON.stringify(ordered, null, 2) + '\n');
  ctx.log(`results: wrote ${file}${full.claims.length ? ` (${full.claims.filter((c) => c.holds).length}/${full.claims.length} claims hold)` : ''}`);
  return file;
}
