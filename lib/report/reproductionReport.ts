// The reproduction report: one static page, figures/index.html, with every notebook's claims
// (paper, claim, the paper's number, ours with its interval, PASS/FAIL and why), how each notebook
// ran (seed, settings, backend, date, wall time) and its figures, interactive with the PNG as
// fallback, linking the notebooks and their CSV tables. Written at the end of `npm run reproduce`
// and by `npm run report` from the results.json files already there.
//
// The page opens from disk with no network: plotly.js is inlined once (or, with plotly: 'link',
// loaded by a relative path into node_modules), the figures' JSON comes from the HTML files
// saveFigure wrote, and every other link is relative to the page.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { writeFileAtomic } from '../io/atomic.js';
import { escapeHtml } from './notebook.js';
import { figureFromHtml, findChromium, plotlyBundlePath, withChromium, type PlotlyFigure } from './figure.js';
import { figuresDir as defaultFiguresDir } from './paths.js';
import { validateResults, type Claim, type NotebookResults } from './results.js';

export interface ReportFigure {
  /** Name as saveFigure took it, e.g. "07_rap/sweep". */
  name: string;
  title?: string;
  /** The figure JSON read back from its HTML (undefined when there is no HTML or it cannot be read). */
  figure?: PlotlyFigure;
  html?: string;
  png?: string;
  svg?: string;
}

export interface ReportRun {
  date?: string;
  /** Where the date came from: results.json's run block, the last git commit of results.json, or its file time. */
  dateSource?: 'results' | 'git' | 'file';
  wallSeconds?: number;
  /** results.json's run block, or the time `npm run reproduce` measured for the notebook. */
  wallSource?: 'results' | 'reproduce';
  backend?: string;
  /** results.json's run block, or the notebook's "engine: ..." output line. */
  backendSource?: 'results' | 'notebook';
  fast?: boolean;
}

export interface ReportNotebook {
  /** The folder name under figures/ (the notebook's stem). */
  stem: string;
  resultsPath: string;
  /** undefined when results.json could not be parsed (see problems). */
  results?: NotebookResults;
  notebookPath?: string;
  figures: ReportFigure[];
  tables: string[];
  run: ReportRun;
  /** What is wrong with results.json, for the page (a shape problem does not hide the rest). */
  problems: string[];
}

export interface ReproductionReport {
  figuresDir: string;
  notebooks: ReportNotebook[];
  generated: string;
}

export interface ReportOptions {
  /** Where the notebooks' folders are; default figuresDir() (`./figures` or $DEEPALIGN_FIGURES_DIR). */
  figuresDir?: string;
  /** Where the .ipynb files are; default `./notebooks`. */
  notebooksDir?: string;
  /** The page; default `<figuresDir>/index.html`. */
  out?: string;
  /** Wall times measured by the caller (npm run reproduce), by stem, for results.json files that lack one. */
  wallSeconds?: Record<string, number>;
  /** 'inline' (default): plotly.js inside the page, which then works anywhere; 'link': a relative
   * <script src> into node_modules (a small page that needs the checkout beside it). */
  plotly?: 'inline' | 'link';
  title?: string;
  /** The generation time shown on the page (tests fix it). */
  now?: Date;
}

export interface WrittenReport {
  path: string;
  notebooks: number;
  claims: number;
  passed: number;
  failed: number;
  figures: number;
  /** One line for the console. */
  note: string;
}

// ---------------------------------------------------------------------------------------------
// Reading what the notebooks wrote

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/** Files under `dir` (recursively), as absolute paths, sorted. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.isFile()) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Figure names in the order the notebook showed them (its "figure <name>: wrote ..." outputs). */
function figureOrder(notebook: unknown): string[] {
  const names: string[] = [];
  if (!isObject(notebook) || !Array.isArray(notebook.cells)) return names;
  for (const cell of notebook.cells) {
    if (!isObject(cell) || !Array.isArray(cell.outputs)) continue;
    for (const output of cell.outputs) {
      if (!isObject(output) || !isObject(output.data)) continue;
      const plain = output.data['text/plain'];
      const text = Array.isArray(plain) ? plain.join('') : typeof plain === 'string' ? plain : '';
      const match = /^figure (\S+): wrote/.exec(text);
      if (match && !names.includes(match[1]!)) names.push(match[1]!);
    }
  }
  return names;
}

/** The backend a notebook printed ("engine: native (tfjs 4.22.0, ...)"), if any. */
function backendFromNotebook(notebook: unknown): string | undefined {
  if (!isObject(notebook) || !Array.isArray(notebook.cells)) return undefined;
  for (const cell of notebook.cells) {
    if (!isObject(cell) || !Array.isArray(cell.outputs)) continue;
    for (const output of cell.outputs) {
      if (!isObject(output) || output.output_type !== 'stream') continue;
      const text = Array.isArray(output.text) ? output.text.join('') : String(output.text ?? '');
      const match = /^engine: ([a-z]+)\b/m.exec(text);
      if (match) return match[1];
    }
  }
  return undefined;
}

/** The last commit date of `file` when it is committed and unchanged, else undefined. */
function gitDate(file: string): string | undefined {
  const git = (args: string[]) => spawnSync('git', args, { cwd: dirname(file), encoding: 'utf8', timeout: 5000 });
  const status = git(['status', '--porcelain', '--', basename(file)]);
  if (status.status !== 0 || status.stdout.trim() !== '') return undefined;
  const log = git(['log', '-1', '--format=%cI', '--', basename(file)]);
  const date = log.status === 0 ? log.stdout.trim() : '';
  return date || undefined;
}

function readNotebookJson(path: string | undefined): unknown {
  if (!path) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/** Reads every `<figuresDir>/<stem>/results.json` with the figures and tables beside it. */
export function collectReport(options: ReportOptions = {}): ReproductionReport {
  const dir = resolve(options.figuresDir ?? defaultFiguresDir());
  const notebooksDir = resolve(options.notebooksDir ?? 'notebooks');
  const stems = existsSync(dir)
    ? readdirSync(dir, { withFileTypes: true })
        .filter((e) => e.isDirectory() && existsSync(join(dir, e.name, 'results.json')))
        .map((e) => e.name)
        .sort()
    : [];
  const notebooks = stems.map((stem): ReportNotebook => {
    const folder = join(dir, stem);
    const resultsPath = join(folder, 'results.json');
    const problems: string[] = [];
    let results: NotebookResults | undefined;
    try {
      const parsed: unknown = JSON.parse(readFileSync(resultsPath, 'utf8'));
      if (!isObject(parsed)) throw new Error('not a JSON object');
      results = parsed as unknown as NotebookResults;
      try {
        validateResults(results);
      } catch (error) {
        problems.push((error as Error).message.replace(/^writeResults: /, ''));
      }
      // A claim that is not an object cannot be shown; the problem above names it.
      results.claims = Array.isArray(results.claims) ? results.claims.filter((c) => isObject(c)) : [];
    } catch (error) {
      problems.push(`cannot read ${basename(resultsPath)}: ${(error as Error).message}`);
    }
    const ipynb = join(notebooksDir, `${stem}.ipynb`);
    const notebookPath = existsSync(ipynb) ? ipynb : undefined;
    const notebookJson = readNotebookJson(notebookPath);

    // Figures: every .html/.png/.svg under the folder, grouped by name.
    const files = filesUnder(folder);
    const byName = new Map<string, ReportFigure>();
    for (const file of files) {
      const ext = /\.(html|png|svg)$/.exec(file)?.[1] as 'html' | 'png' | 'svg' | undefined;
      if (!ext) continue;
      const name = relative(dir, file).split(sep).join('/').replace(/\.(html|png|svg)$/, '');
      const fig = byName.get(name) ?? { name };
      fig[ext] = file;
      byName.set(name, fig);
    }
    for (const fig of byName.values()) {
      if (!fig.html) continue;
      fig.figure = figureFromHtml(readFileSync(fig.html, 'utf8'));
      const title = fig.figure?.layout?.title;
      const text = typeof title === 'string' ? title : isObject(title) && typeof title.text === 'string' ? title.text : undefined;
      if (text) fig.title = text.replace(/<[^>]*>/g, ' ').replace(/\s+/g, ' ').trim();
    }
    const order = figureOrder(notebookJson);
    const rank = (name: string) => (order.includes(name) ? order.indexOf(name) : order.length);
    const figures = [...byName.values()].sort((a, b) => rank(a.name) - rank(b.name) || a.name.localeCompare(b.name));
    const tables = files.filter((f) => f.endsWith('.csv'));

    const recorded = isObject(results?.run) ? results!.run : {};
    const run: ReportRun = {};
    if (typeof recorded.date === 'string') Object.assign(run, { date: recorded.date, dateSource: 'results' });
    else {
      const committed = gitDate(resultsPath);
      if (committed) Object.assign(run, { date: committed, dateSource: 'git' });
      else Object.assign(run, { date: statSync(resultsPath).mtime.toISOString(), dateSource: 'file' });
    }
    if (typeof recorded.wallSeconds === 'number') Object.assign(run, { wallSeconds: recorded.wallSeconds, wallSource: 'results' });
    else if (options.wallSeconds?.[stem] !== undefined) Object.assign(run, { wallSeconds: options.wallSeconds[stem], wallSource: 'reproduce' });
    if (typeof recorded.backend === 'string') Object.assign(run, { backend: recorded.backend, backendSource: 'results' });
    else {
      const printed = backendFromNotebook(notebookJson);
      if (printed) Object.assign(run, { backend: printed, backendSource: 'notebook' });
    }
    if (typeof recorded.fast === 'boolean') run.fast = recorded.fast;
    return { stem, resultsPath, results, notebookPath, figures, tables, run, problems };
  });
  return { figuresDir: dir, notebooks, generated: (options.now ?? new Date()).toISOString() };
}

// ---------------------------------------------------------------------------------------------
// Formatting claims

/** A Wilson rate as lib/metrics writes it: { k, n, rate, low, high }. */
const isRate = (v: unknown): v is { k: number; n: number; rate: number; low: number; high: number } =>
  isObject(v) && ['k', 'n', 'rate', 'low', 'high'].every((key) => typeof v[key] === 'number');
const CENTRAL = ['rate', 'ratio', 'diff', 'mean', 'value', 'estimate', 'median'];
/** An estimate with an interval: { ratio | diff | mean | ..., low, high }. */
const centralKey = (v: unknown): string | undefined =>
  isObject(v) && typeof v.low === 'number' && typeof v.high === 'number' ? CENTRAL.find((key) => typeof v[key] === 'number') : undefined;
/** Several seeds pooled: { pooled: rate, mean, std, perSeed?, step? }. */
const isPooled = (v: unknown): v is { pooled: { k: number; n: number; rate: number; low: number; high: number }; mean?: number; std?: number } =>
  isObject(v) && isRate(v.pooled);

/** 4 significant digits, integers as they are. */
export function formatNumber(x: number): string {
  if (Number.isInteger(x)) return String(x);
  const abs = Math.abs(x);
  if (abs >= 1000) return x.toFixed(0);
  if (abs >= 100) return x.toFixed(1);
  if (abs !== 0 && abs < 1e-3) return x.toExponential(2);
  return String(Number(x.toPrecision(4)));
}

const pct = (x: number) => (x * 100).toFixed(1);

/** "62.2% [58.1, 66.0] (358/576)". */
export function formatRate(r: { k: number; n: number; rate: number; low: number; high: number }): string {
  return `${pct(r.rate)}% [${pct(r.low)}, ${pct(r.high)}] (${formatNumber(r.k)}/${formatNumber(r.n)})`;
}

function formatValue(v: unknown): string | undefined {
  if (typeof v === 'number') return formatNumber(v);
  if (typeof v === 'string') return v.length > 160 ? `${v.slice(0, 157)}…` : v;
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (v === null) return '—';
  if (isRate(v)) return formatRate(v);
  if (isPooled(v)) {
    const parts = [`${formatRate(v.pooled)} pooled`];
    if (typeof v.mean === 'number' && typeof v.std === 'number') parts.push(`mean ${pct(v.mean)} ± ${pct(v.std)}%`);
    const step = (v as Record<string, unknown>).step;
    return `${typeof step === 'number' ? `step ${step}: ` : ''}${parts.join(', ')}`;
  }
  const central = centralKey(v);
  if (central) {
    const o = v as Record<string, number>;
    return `${formatNumber(o[central]!)} [${formatNumber(o.low!)}, ${formatNumber(o.high!)}]`;
  }
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === 'number')) {
      const shown = v.slice(0, 8).map((x) => formatNumber(x as number)).join(', ');
      return v.length > 8 ? `${shown}, … (${v.length})` : shown;
    }
    if (v.every((x) => typeof x === 'string')) {
      const shown = v.slice(0, 6).join(', ');
      return v.length > 6 ? `${shown}, … (${v.length})` : shown;
    }
    return `[${v.length} items]`;
  }
  return undefined;
}

/**
 * Our number in a few lines: Wilson rates as "rate% [low, high] (k/n)", pooled seeds with their
 * mean ± std, estimates with their interval, nested objects as "a.b: value" (two levels), at most
 * `maxLines` lines (the page also carries the full JSON).
 */
export function formatObserved(observed: unknown, maxLines = 8): string[] {
  const lines: string[] = [];
  const top = formatValue(observed);
  if (top !== undefined && !isObject(observed)) return [top];
  const skip = new Set<string>();
  if (top !== undefined && isObject(observed)) {
    // An interval or a rate at the top: its headline first, then the other fields.
    lines.push(top);
    const central = centralKey(observed);
    for (const key of isRate(observed) ? ['k', 'n', 'rate', 'low', 'high'] : isPooled(observed) ? ['pooled', 'mean', 'std', 'step'] : [central!, 'low', 'high']) skip.add(key);
  }
  const walk = (value: Record<string, unknown>, prefix: string, depth: number) => {
    for (const [key, child] of Object.entries(value)) {
      if (depth === 0 && skip.has(key)) continue;
      // The reason is shown with the verdict; empty notes say nothing.
      if ((depth === 0 && key === 'reason' && typeof child === 'string') || child === '') continue;
      const label = `${prefix}${key}`;
      const shown = formatValue(child);
      if (shown !== undefined) lines.push(`${label}: ${shown}`);
      else if (isObject(child) && depth < 2) walk(child, `${label}.`, depth + 1);
      else lines.push(`${label}: {…}`);
    }
  };
  if (isObject(observed)) walk(observed, '', 0);
  if (lines.length > maxLines) {
    const more = lines.length - (maxLines - 1);
    return [...lines.slice(0, maxLines - 1), `… ${more} more (full JSON below)`];
  }
  return lines;
}

/** The test the notebook applied: the expected string, or expected.rule. */
export function claimRule(expected: Claim['expected']): string {
  if (typeof expected === 'string') return expected;
  if (isObject(expected) && typeof expected.rule === 'string') return expected.rule;
  return typeof expected === 'object' ? JSON.stringify(expected) : String(expected);
}

/** Splits "Qi et al. 2025, Table 1 (Llama-2-7B base 68.6%)" into the source and the parenthesis. */
export function splitPaper(paper: string): { source: string; detail?: string } {
  const text = paper.trim();
  if (!text.endsWith(')')) return { source: text };
  let depth = 0;
  for (let i = text.length - 1; i >= 0; i--) {
    if (text[i] === ')') depth++;
    else if (text[i] === '(' && --depth === 0) {
      const source = text.slice(0, i).trim();
      return source ? { source, detail: text.slice(i + 1, -1).trim() } : { source: text };
    }
  }
  return { source: text };
}

/** The paper's numbers a claim carries beside its rule (expected's other fields), one line each. */
export function paperNumbers(expected: Claim['expected']): string[] {
  if (typeof expected === 'number' || typeof expected === 'boolean') return [String(expected)];
  if (!isObject(expected)) return [];
  const lines: string[] = [];
  for (const [key, value] of Object.entries(expected)) {
    if (key === 'rule') continue;
    const shown = formatValue(value);
    if (shown !== undefined) lines.push(`${key}: ${shown}`);
    else if (isObject(value)) {
      const inner = Object.entries(value).map(([k, v]) => `${k} ${formatValue(v) ?? '{…}'}`);
      lines.push(`${key}: ${inner.join('; ')}`);
    }
  }
  return lines;
}

const sentence = (text: string) => {
  const t = text.trim();
  return t === '' ? t : `${t[0]!.toUpperCase()}${t.slice(1)}${/[.!?]$/.test(t) ? '' : '.'}`;
};

/**
 * One sentence on why a claim fails (or on a caveat, when a holding claim gives one): the
 * claim's `reason`, else a string `observed.reason`, else, for a failing claim, the rule it did
 * not meet. Empty for a holding claim without a reason.
 */
export function claimReason(claim: Claim): string {
  if (typeof claim.reason === 'string' && claim.reason.trim()) return sentence(claim.reason);
  const observed = claim.observed;
  if (isObject(observed) && typeof observed.reason === 'string' && observed.reason.trim()) return sentence(observed.reason);
  if (claim.holds) return '';
  if (isObject(observed) && observed.testable === false) return sentence(`Not testable in this run: ${claimRule(claim.expected)}`);
  return sentence(`Not met: ${claimRule(claim.expected)}`);
}

/** Settings in one short line per top-level key (the page also carries the full JSON). */
export function summariseSettings(settings: unknown, maxItems = 14): string[] {
  if (!isObject(settings)) return [];
  const items = Object.entries(settings).map(([key, value]) => {
    const shown = formatValue(value);
    if (shown !== undefined) return `${key}=${shown.length > 60 ? `${shown.slice(0, 57)}…` : shown}`;
    if (isObject(value)) return `${key}={${Object.keys(value).slice(0, 4).join(', ')}${Object.keys(value).length > 4 ? ', …' : ''}}`;
    return `${key}=…`;
  });
  return items.length > maxItems ? [...items.slice(0, maxItems), `… ${items.length - maxItems} more`] : items;
}

/** "2026-12-02 01:33 UTC" from any date string Date can read (else the string as it is). */
export function formatDate(date: string): string {
  const d = new Date(date);
  return Number.isNaN(d.getTime()) ? date : `${d.toISOString().slice(0, 16).replace('T', ' ')} UTC`;
}

export function formatWallTime(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  const s = Math.round(seconds - m * 60);
  return m >= 60 ? `${Math.floor(m / 60)} h ${m % 60} min` : `${m} min ${s} s`;
}

// ---------------------------------------------------------------------------------------------
// The page

const STYLE = `
:root { --pass: #1a7f37; --pass-bg: #e9f7ee; --fail: #c62828; --fail-bg: #fdecea; --muted: #57606a; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1f2328; margin: 0 auto; padding: 24px 32px 64px; max-width: 1500px; }
h1 { font-size: 26px; margin: 0 0 4px; } h2 { font-size: 20px; margin: 36px 0 8px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
a { color: #0969da; } .muted { color: var(--muted); } code, pre { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.summary { font-size: 15px; margin: 6px 0 8px; }
.failing { margin: 0 0 10px; font-weight: 600; color: var(--fail); } .failing a { color: var(--fail); }
tr.claim:target td { outline: 2px solid #0969da; }
nav a { margin-right: 12px; white-space: nowrap; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid var(--line); padding: 6px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; position: sticky; top: 0; z-index: 1; }
tr.claim.pass td.verdict { border-left: 6px solid var(--pass); background: var(--pass-bg); }
tr.claim.fail td.verdict { border-left: 6px solid var(--fail); background: var(--fail-bg); }
tr.claim.fail td { background: #fff8f7; }
.badge { display: inline-block; font-weight: 700; font-size: 13px; letter-spacing: .04em; padding: 2px 10px; border-radius: 4px; color: #fff; }
.badge.pass { background: var(--pass); } .badge.fail { background: var(--fail); }
.reason { margin-top: 6px; font-weight: 600; }
tr.claim.fail .reason { color: var(--fail); } tr.claim.pass .reason { color: var(--muted); font-weight: 400; }
td.claim-id code { font-weight: 700; font-size: 13px; } .rule { color: var(--muted); margin-top: 4px; }
ul.lines { margin: 0; padding-left: 16px; } ul.lines li { margin: 0; }
details summary { cursor: pointer; color: var(--muted); font-size: 12px; }
details pre { max-height: 320px; overflow: auto; background: #f6f8fa; padding: 8px; white-space: pre-wrap; word-break: break-word; }
.settings-summary { font-size: 12px; }
.problem { color: var(--fail); font-weight: 600; }
.figures { display: flex; flex-wrap: wrap; gap: 16px; }
figure.figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: 8px; max-width: 100%; overflow-x: auto; }
figure.figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 12px; color: var(--muted); margin-top: 4px; }
.missing { color: var(--fail); padding: 24px; }
`;

// Runs in the page: each figure becomes interactive; without plotly, or when plotting fails,
// the PNG already in the figure stays. body[data-rendered] marks the end (tests and screenshots wait for it).
const RENDER = `
(function () {
  var data = JSON.parse(document.getElementById('figure-data').textContent);
  var jobs = [];
  var boxes = document.querySelectorAll('figure.figure[data-figure]');
  function fallback(box, why) {
    var plot = box.querySelector('.plot');
    var img = box.querySelector('img');
    box.setAttribute('data-state', img ? 'png' : 'missing');
    if (why) box.setAttribute('data-why', String(why));
    if (img && plot.firstChild !== img) { plot.innerHTML = ''; plot.appendChild(img); }
    if (!img && !plot.querySelector('.missing')) plot.innerHTML = '<div class="missing">no image: ' + String(why || 'nothing saved') + '</div>';
  }
  for (var i = 0; i < boxes.length; i++) {
    (function (box) {
      var fig = data[box.getAttribute('data-figure')];
      if (!fig) return fallback(box, 'no figure JSON (PNG only)');
      if (!window.Plotly) return fallback(box, 'plotly.js did not load');
      var plot = box.querySelector('.plot');
      var img = box.querySelector('img');
      var holder = document.createElement('div');
      var width = (fig.layout && fig.layout.width) || 800;
      var height = (fig.layout && fig.layout.height) || 500;
      holder.style.width = width + 'px';
      holder.style.height = height + 'px';
      if (img) img.style.display = 'none';
      plot.appendChild(holder);
      var layout = Object.assign({}, fig.layout, { width: width, height: height });
      try {
        jobs.push(Promise.resolve(Plotly.newPlot(holder, fig.data, layout, Object.assign({ responsive: false }, fig.config))).then(function () {
          if (img) img.remove();
          box.setAttribute('data-state', 'plotly');
        }, function (e) { holder.remove(); if (img) img.style.display = ''; fallback(box, e && e.message); }));
      } catch (e) { holder.remove(); if (img) img.style.display = ''; fallback(box, e && e.message); }
    })(boxes[i]);
  }
  Promise.all(jobs).then(function () { document.body.setAttribute('data-rendered', 'true'); });
})();
`;

/** The id of a claim's row, for links. */
const claimAnchor = (stem: string, id: string) => `claim-${stem}-${id}`.replace(/[^A-Za-z0-9_.-]/g, '-');

/** JSON safe inside a <script> element. */
const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, '\\u003c');

function lines(items: string[], cls = 'lines'): string {
  return items.length === 0 ? '' : `<ul class="${cls}">${items.map((l) => `<li>${escapeHtml(l)}</li>`).join('')}</ul>`;
}

function jsonDetails(label: string, value: unknown): string {
  return `<details><summary>${escapeHtml(label)}</summary><pre>${escapeHtml(JSON.stringify(value, null, 2) ?? String(value))}</pre></details>`;
}

/** The page for a collected report; links are relative to `out`. */
export function reproductionReportHtml(report: ReproductionReport, options: { out: string; plotly?: 'inline' | 'link'; title?: string }): string {
  const outDir = dirname(resolve(options.out));
  const href = (path: string) => relative(outDir, path).split(sep).map(encodeURIComponent).join('/');
  const link = (path: string, text: string) => `<a href="${escapeHtml(href(path))}">${escapeHtml(text)}</a>`;
  const bundle = plotlyBundlePath();
  const plotly =
    options.plotly === 'link'
      ? `<script src="${escapeHtml(href(bundle))}"></script>`
      : // plotly.min.js contains no "</script": inlined as is (checked, else escaped).
        `<script>${readFileSync(bundle, 'utf8').replace(/<\/script/gi, '<\\/script')}</script>`;
  const title = options.title ?? 'deepalign: reproduction report';

  const claims = report.notebooks.flatMap((nb) => (nb.results?.claims ?? []).map((claim) => ({ nb, claim })));
  const passed = claims.filter((c) => c.claim.holds === true).length;
  const failed = claims.length - passed;
  const backends = [...new Set(report.notebooks.map((nb) => nb.run.backend).filter((b): b is string => !!b))];

  const claimRows = claims
    .map(({ nb, claim }) => {
      const verdict = claim.holds === true ? 'PASS' : 'FAIL';
      const paper = splitPaper(String(claim.paper));
      const numbers = [...(paper.detail ? [paper.detail] : []), ...paperNumbers(claim.expected)];
      const reason = claimReason(claim);
      return `<tr class="claim ${verdict.toLowerCase()}" id="${escapeHtml(claimAnchor(nb.stem, String(claim.id)))}" data-notebook="${escapeHtml(nb.stem)}" data-claim-id="${escapeHtml(String(claim.id))}" data-verdict="${verdict}" data-paper="${escapeHtml(String(claim.paper))}">
<td class="notebook"><a href="#nb-${escapeHtml(nb.stem)}">${escapeHtml(nb.stem)}</a></td>
<td class="paper">${escapeHtml(paper.source)}</td>
<td class="claim-id"><code>${escapeHtml(String(claim.id))}</code><div class="rule">${escapeHtml(claimRule(claim.expected))}</div></td>
<td class="paper-number">${lines(numbers)}</td>
<td class="ours">${lines(formatObserved(claim.observed))}${jsonDetails('JSON', claim.observed)}</td>
<td class="verdict"><span class="badge ${verdict.toLowerCase()}">${verdict}</span>${reason ? `<div class="reason">${escapeHtml(reason)}</div>` : ''}</td>
</tr>`;
    })
    .join('\n');

  const runRows = report.notebooks
    .map((nb) => {
      const r = nb.results;
      const nbClaims = r?.claims ?? [];
      const ok = nbClaims.filter((c) => c.holds === true).length;
      const date = nb.run.date
        ? `${escapeHtml(formatDate(nb.run.date))}${nb.run.dateSource === 'results' ? '' : ` <span class="muted">(${nb.run.dateSource === 'git' ? 'last commit of results.json' : 'results.json file time'})</span>`}`
        : '—';
      const wall =
        nb.run.wallSeconds !== undefined
          ? `${escapeHtml(formatWallTime(nb.run.wallSeconds))}${nb.run.wallSource === 'reproduce' ? ' <span class="muted">(measured by reproduce)</span>' : ''}`
          : '<span class="muted">not recorded</span>';
      const backend = nb.run.backend
        ? `${escapeHtml(nb.run.backend)}${nb.run.backendSource === 'notebook' ? ' <span class="muted">(notebook output)</span>' : ''}`
        : '<span class="muted">not recorded</span>';
      const links = [
        nb.notebookPath ? link(nb.notebookPath, `${nb.stem}.ipynb`) : '',
        link(nb.resultsPath, 'results.json'),
        ...nb.tables.map((t) => link(t, basename(t))),
      ].filter(Boolean);
      return `<tr class="run" data-notebook="${escapeHtml(nb.stem)}">
<td><a href="#nb-${escapeHtml(nb.stem)}">${escapeHtml(nb.stem)}</a>${nb.run.fast ? ' <span class="muted">(fast mode)</span>' : ''}</td>
<td>${ok}/${nbClaims.length}</td>
<td>${r && typeof r.seed === 'number' ? r.seed : '—'}</td>
<td>${backend}</td>
<td>${date}</td>
<td class="wall">${wall}</td>
<td class="settings"><div class="settings-summary">${summariseSettings(r?.settings).map(escapeHtml).join(' · ')}</div>${r ? jsonDetails('all settings', r.settings) : ''}</td>
<td class="links">${links.join('<br>')}</td>
</tr>`;
    })
    .join('\n');

  const figureData: Record<string, PlotlyFigure> = {};
  const sections = report.notebooks
    .map((nb) => {
      const figures = nb.figures
        .map((fig) => {
          if (fig.figure) figureData[fig.name] = fig.figure;
          const img = fig.png ? `<img src="${escapeHtml(href(fig.png))}" alt="${escapeHtml(fig.title ?? fig.name)}" loading="eager">` : '';
          const files = [fig.html && link(fig.html, 'html'), fig.png && link(fig.png, 'png'), fig.svg && link(fig.svg, 'svg')].filter(Boolean).join(' · ');
          return `<figure class="figure" data-figure="${escapeHtml(fig.name)}" data-state="pending"><div class="plot">${img}</div>
<figcaption>${fig.title ? `<strong>${escapeHtml(fig.title)}</strong> · ` : ''}<code>${escapeHtml(fig.name)}</code> · ${files}</figcaption></figure>`;
        })
        .join('\n');
      const problems = nb.problems.map((p) => `<p class="problem">results.json: ${escapeHtml(p)}</p>`).join('');
      const links = [nb.notebookPath ? link(nb.notebookPath, `${nb.stem}.ipynb`) : '', link(nb.resultsPath, 'results.json'), ...nb.tables.map((t) => link(t, basename(t)))]
        .filter(Boolean)
        .join(' · ');
      return `<section class="notebook" id="nb-${escapeHtml(nb.stem)}"><h2>${escapeHtml(nb.stem)}</h2>${problems}
<p class="links">${links}</p>
<div class="figures">${figures || '<p class="muted">no figures</p>'}</div></section>`;
    })
    .join('\n');

  const generated = formatDate(report.generated);
  const failing = claims
    .filter((c) => c.claim.holds !== true)
    .map(({ nb, claim }) => `<a href="#${escapeHtml(claimAnchor(nb.stem, String(claim.id)))}">${escapeHtml(`${nb.stem}/${claim.id}`)}</a>`)
    .join(', ');
  const shownDir = relative(process.cwd(), report.figuresDir);
  const source = shownDir.startsWith('..') ? report.figuresDir : shownDir || '.';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
${plotly}
</head>
<body>
<header>
<h1>${escapeHtml(title)}</h1>
<p class="summary">${report.notebooks.length} notebook(s) · ${claims.length} claim(s): <span class="badge pass">${passed} PASS</span> <span class="badge fail">${failed} FAIL</span>
 · backend ${escapeHtml(backends.join(', ') || 'not recorded')} · generated ${escapeHtml(generated)} from ${escapeHtml(source)}/*/results.json</p>
${failing ? `<p class="failing">FAIL: ${failing}</p>` : ''}
<nav><a href="#claims">claims</a><a href="#runs">runs</a>${report.notebooks.map((nb) => `<a href="#nb-${escapeHtml(nb.stem)}">${escapeHtml(nb.stem)}</a>`).join('')}</nav>
</header>
<section id="claims"><h2>Claims</h2>
<p class="muted">Each row is one paper claim a notebook checks, with the paper's number, ours (rates as pooled Wilson 95% intervals, k/n) and the rule applied; the verdict is the notebook's own (results.json <code>holds</code>).</p>
<table id="claims-table"><thead><tr><th>notebook</th><th>paper</th><th>claim and rule</th><th>the paper's number</th><th>ours</th><th>verdict</th></tr></thead>
<tbody>
${claimRows}
</tbody></table></section>
<section id="runs"><h2>Runs</h2>
<table id="runs-table"><thead><tr><th>notebook</th><th>claims holding</th><th>seed</th><th>backend</th><th>date</th><th>wall time</th><th>settings</th><th>notebook, results and tables</th></tr></thead>
<tbody>
${runRows}
</tbody></table></section>
${sections}
<script type="application/json" id="figure-data">${scriptJson(figureData)}</script>
<script>${RENDER}</script>
</body>
</html>
`;
}

/** Collects the report and writes the page (atomically); default `<figuresDir>/index.html`. */
export function writeReproductionReport(options: ReportOptions = {}): WrittenReport {
  const report = collectReport(options);
  const out = resolve(options.out ?? join(report.figuresDir, 'index.html'));
  mkdirSync(dirname(out), { recursive: true });
  writeFileAtomic(out, reproductionReportHtml(report, { out, plotly: options.plotly, title: options.title }));
  const claims = report.notebooks.flatMap((nb) => nb.results?.claims ?? []);
  const passed = claims.filter((c) => c.holds === true).length;
  const figures = report.notebooks.reduce((n, nb) => n + nb.figures.length, 0);
  const shown = relative(process.cwd(), out);
  const path = shown.startsWith('..') ? out : shown;
  return {
    path: out,
    notebooks: report.notebooks.length,
    claims: claims.length,
    passed,
    failed: claims.length - passed,
    figures,
    note: `report: wrote ${path} (${report.notebooks.length} notebook(s), ${claims.length} claim(s): ${passed} PASS, ${claims.length - passed} FAIL; ${figures} figure(s))`,
  };
}

/**
 * Opens the page in headless Chromium, waits for every figure, and saves a screenshot of the top
 * `height` pixels (or the full page). Returns the page errors seen (none, when all is well).
 */
export async function screenshotReport(
  htmlPath: string,
  pngPath: string,
  options: { chromium?: string | null; width?: number; height?: number; fullPage?: boolean } = {},
): Promise<{ errors: string[] }> {
  const chromium = findChromium(options.chromium);
  if (!chromium.path) throw new Error(`screenshotReport: ${chromium.reason}`);
  return withChromium(chromium.path, async (browser) => {
    const page = await browser.newPage({ viewport: { width: options.width ?? 1400, height: options.height ?? 1000 } });
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    try {
      await page.goto(pathToFileURL(resolve(htmlPath)).href);
      await page.waitForFunction('document.body.getAttribute("data-rendered") === "true"', undefined, { timeout: 60_000 });
      const png = await page.screenshot({ fullPage: options.fullPage ?? false });
      mkdirSync(dirname(resolve(pngPath)), { recursive: true });
      writeFileAtomic(pngPath, png);
      return { errors };
    } finally {
      await page.close();
    }
  });
}
