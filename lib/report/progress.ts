// Progress bars for long loops (training steps, evaluation batches).
//
//   const bar = progress(steps, { label: 'train' });
//   for (...) { ...; bar.tick(1, { loss, 'tok/s': tokPerS }); }
//   bar.done();
//
// Where it renders: in a notebook, one display output updated in place (the committed notebook
// keeps the final state); in a terminal, one `\r`-rewritten line on stderr; in a log (CI, pipes),
// a line every `logIntervalMs` plus the final line. Updates are throttled, so calling tick() every
// step costs a Date.now() and a comparison.
import { display, newDisplayId, inNotebook } from './notebook.js';

export type ProgressStats = Record<string, number | string>;
export type ProgressMode = 'auto' | 'notebook' | 'tty' | 'log' | 'silent';

export interface ProgressOptions {
  label?: string;
  /** Unit name shown in the rate, default "it". */
  unit?: string;
  /** Rendering target; "auto" picks notebook, tty or log. `DEEPALIGN_PROGRESS=0` forces silent. */
  mode?: ProgressMode;
  /** Minimum time between redraws in a notebook or terminal (ms). Default 250 / 100. */
  minIntervalMs?: number;
  /** Time between lines in log mode (ms). Default 10 000. */
  logIntervalMs?: number;
  /** Where tty/log output goes. Default process.stderr. */
  write?: (text: string) => void;
  /** Clock in ms (tests inject one). Default Date.now. */
  now?: () => number;
}

export interface ProgressBar {
  /** Advances by `n` (default 1) and records the latest stats. */
  tick(n?: number, stats?: ProgressStats): void;
  /** Sets the position to `value`. */
  update(value: number, stats?: ProgressStats): void;
  /** Final render (always shown), with optional final stats. */
  done(stats?: ProgressStats): void;
  readonly value: number;
}

export interface ProgressState {
  label: string;
  unit: string;
  value: number;
  total: number;
  elapsedMs: number;
  stats: ProgressStats;
}

const BAR_WIDTH = 24;
const PARTIAL = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];

/** mm:ss, or h:mm:ss past an hour. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** 4 significant digits, with k/M suffixes for large values (throughputs). */
export function formatStat(value: number | string): string {
  if (typeof value === 'string') return value;
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs >= 1e6) return `${Number((value / 1e6).toPrecision(3))}M`;
  if (abs >= 1e4) return `${Number((value / 1e3).toPrecision(3))}k`;
  if (Number.isInteger(value)) return String(value);
  return abs >= 1e-3 ? String(Number(value.toPrecision(4))) : value.toExponential(2);
}

/** The one-line rendering, e.g. `train  42%|██████████▏             | 42/100 [00:03<00:04, 12.3 it/s] loss=1.234`. */
export function formatProgress(state: ProgressState): string {
  // Nothing to do is complete: an empty loop (total 0) shows 100%, not 0%.
  const fraction = state.total > 0 ? Math.min(1, state.value / state.total) : 1;
  const eighths = Math.round(fraction * BAR_WIDTH * 8);
  const full = Math.floor(eighths / 8);
  const bar = '█'.repeat(full) + (full < BAR_WIDTH ? PARTIAL[eighths % 8] + ' '.repeat(BAR_WIDTH - full - 1) : '');
  const seconds = state.elapsedMs / 1000;
  const rate = seconds > 0 ? state.value / seconds : NaN;
  const eta = rate > 0 ? ((state.total - state.value) / rate) * 1000 : NaN;
  const rateText = Number.isFinite(rate) ? `${formatStat(rate)} ${state.unit}/s` : `? ${state.unit}/s`;
  const stats = Object.entries(state.stats)
    .map(([k, v]) => `${k}=${formatStat(v)}`)
    .join(' ');
  const pct = `${Math.floor(fraction * 100)}`.padStart(3);
  const head = state.label ? `${state.label} ` : '';
  return `${head}${pct}%|${bar}| ${state.value}/${state.total} [${formatDuration(state.elapsedMs)}<${formatDuration(eta)}, ${rateText}]${stats ? ' ' + stats : ''}`;
}

function resolveMode(mode: ProgressMode): Exclude<ProgressMode, 'auto'> {
  if (process.env.DEEPALIGN_PROGRESS === '0') return 'silent';
  if (mode !== 'auto') return mode;
  if (inNotebook()) return 'notebook';
  return process.stderr.isTTY ? 'tty' : 'log';
}

/** A progress bar over `total` steps; see the file comment for where it renders. */
export function progress(total: number, options: ProgressOptions = {}): ProgressBar {
  if (!Number.isFinite(total) || total < 0) throw new Error(`progress: \`total\` must be a finite number >= 0, got ${total}`);
  const mode = resolveMode(options.mode ?? 'auto');
  const now = options.now ?? Date.now;
  const write = options.write ?? ((text: string) => void process.stderr.write(text));
  const minInterval = options.minIntervalMs ?? (mode === 'notebook' ? 250 : 100);
  const logInterval = options.logIntervalMs ?? 10_000;
  const started = now();
  const displayId = mode === 'notebook' ? newDisplayId('progress') : '';
  const state: ProgressState = { label: options.label ?? '', unit: options.unit ?? 'it', value: 0, total, elapsedMs: 0, stats: {} };
  let lastDraw = -Infinity;
  let drawn = false;
  let finished = false;

  const draw = (final: boolean) => {
    const t = now();
    const interval = mode === 'log' ? logInterval : minInterval;
    if (!final && drawn && t - lastDraw < interval) return;
    lastDraw = t;
    state.elapsedMs = t - started;
    const line = formatProgress(state);
    if (mode === 'notebook') {
      // The flags let scripts/nb.ts echo the bar to the terminal while a long cell runs, and
      // always echo the final state (its log otherwise throttles to one line per 10 s).
      display({ data: { 'text/plain': line }, metadata: { deepalign: { progress: true, final } } }, { displayId, update: drawn });
    } else if (mode === 'tty') {
      write(`\r${line}\x1b[K${final ? '\n' : ''}`);
    } else if (mode === 'log') {
      write(line + '\n');
    }
    drawn = true;
  };

  const bar: ProgressBar = {
    tick(n = 1, stats) {
      bar.update(state.value + n, stats);
    },
    update(value, stats) {
      if (finished) throw new Error(`progress(${state.label || 'unnamed'}): update after done()`);
      state.value = value;
      if (stats) state.stats = { ...state.stats, ...stats };
      if (mode !== 'silent') draw(false);
    },
    done(stats) {
      if (finished) return;
      if (stats) state.stats = { ...state.stats, ...stats };
      finished = true;
      if (mode !== 'silent') draw(true);
    },
    get value() {
      return state.value;
    },
  };
  // Log mode starts quietly (the first line comes after logInterval); elsewhere show 0% at once.
  if (mode === 'notebook' || mode === 'tty') draw(false);
  else if (mode === 'log') {
    lastDraw = started;
    drawn = true;
  }
  return bar;
}
