// Executes a notebook in this process with tslab's own converter and executor (the code the
// tslab Jupyter kernel runs), so a notebook behaves the same here and under Jupyter, and no
// Python is needed. Streams, display data (including in-place display updates, which progress
// bars use) and execution counts are collected per cell and written back as nbformat outputs.
//
// One notebook per process: tslab's executor keeps cell globals in a process-wide object and
// we patch process.stdout/stderr, so scripts/nb.ts runs one notebook and exits.
import { AsyncLocalStorage } from 'node:async_hooks';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import {
  DEEPALIGN_KERNELSPEC,
  foldCarriageReturns,
  TSLAB_LANGUAGE_INFO,
  type Cell,
  type DisplayDataOutput,
  type Notebook,
  type Output,
} from './ipynb.js';

const require = createRequire(import.meta.url);
// Before tslab builds its compiler: check cells and lib with `strict`, as tsc does.
require('./tslab-strict.cjs');

// tslab 1.0.22 internals (pinned in package.json): these are stable CommonJS modules.
interface TslabConverter {
  close(): void;
}
interface TslabExecutor {
  execute(src: string): Promise<boolean>;
  /** Rejects the awaited promise of a running async cell (what Jupyter's interrupt does). */
  interrupt(): void;
  close(): void;
}
interface DisplayMessage {
  data: Record<string, unknown>;
  metadata: Record<string, unknown>;
  transient?: { display_id?: string };
}
const tslabConverter = require('tslab/dist/converter.js') as {
  createConverter(options: { isJS: boolean; isBrowser: boolean }): TslabConverter;
};
const tslabExecutor = require('tslab/dist/executor.js') as {
  createExecutor(
    rootDir: string,
    convs: { node: TslabConverter; browser: TslabConverter; close(): void },
    console: { log: (...args: unknown[]) => void; error: (...args: unknown[]) => void },
  ): TslabExecutor;
};
// The module whose `lastWriteDisplayData` tslab's public `display` API writes through.
const tslabJupyter = require('tslab/dist/jupyter.js') as {
  lastWriteDisplayData: ((message: DisplayMessage, update: boolean) => void) | null;
};

export interface CellFailure {
  /** 1-based index among all cells of the notebook (what a reader counts in Jupyter): the cell
   * that failed, or the cell whose leftover callback (timer, unawaited promise) failed. */
  cellNumber: number;
  executionCount: number;
  /** The TypeScript diagnostics or the stack trace, as the cell printed them to stderr. */
  errorText: string;
  firstLine: string;
  /** Set when the error came from a callback the cell left running and surfaced later, e.g.
   * "error from a callback left running by cell 2, surfaced while cell 4 ran". */
  surfaced?: string;
}

export interface RunResult {
  notebook: Notebook;
  failure?: CellFailure;
  seconds: number;
  cellSeconds: number[];
}

export interface RunOptions {
  /** Called with one line of progress per cell; defaults to the real stderr. */
  log?: (line: string) => void;
  /** Fail a cell still awaiting after this many seconds (interrupting it as Jupyter would).
   * Only awaits can be interrupted: a synchronous loop keeps the process busy regardless. */
  cellTimeoutS?: number;
}

/** Mutable per-cell state that the patched streams and display hooks write into. */
interface CellCapture {
  outputs: Output[];
  stderr: string;
  /** Errors from callbacks (and process.exit calls), with the number of the cell whose code
   * started the callback; undefined when no cell did (runner or tslab code). */
  asyncErrors: { origin: number | undefined; message?: string }[];
}

/** The number of the cell whose code is running. Timers, promises and other callbacks inherit
 * it from the code that created them, so an error thrown late is traced to the cell that left
 * the callback running rather than to whichever cell happens to run when it fires. */
const cellContext = new AsyncLocalStorage<number>();

/** After the last cell, how long to wait for timers the notebook left pending before judging
 * the run: an error they throw must fail it. Only waited while timers are pending, so a notebook
 * that leaves none costs a few event-loop turns. */
const DRAIN_LIMIT_MS = 2000;

const formatError = (error: unknown): string =>
  error instanceof Error ? (error.stack ?? `${error.name}: ${error.message}`) : String(error);

/**
 * Runs every code cell of `notebook` in order, stopping at the first failing cell. The working
 * directory must already be the repository root (scripts/nb.ts does that), because tslab
 * resolves `./lib/...` imports and compiles them relative to it.
 */
export async function runNotebook(notebook: Notebook, options: RunOptions = {}): Promise<RunResult> {
  const realStderrWrite = process.stderr.write.bind(process.stderr);
  const log = options.log ?? ((line: string) => void realStderrWrite(line + '\n'));

  // Fresh copy: outputs of the previous run are replaced, sources and metadata are kept.
  const cells: Cell[] = notebook.cells.map((cell) =>
    cell.cell_type === 'code' ? { ...cell, outputs: [], execution_count: null } : { ...cell },
  );
  const result: RunResult = {
    notebook: {
      ...notebook,
      cells,
      metadata: { ...notebook.metadata, kernelspec: DEEPALIGN_KERNELSPEC, language_info: TSLAB_LANGUAGE_INFO },
    },
    seconds: 0,
    cellSeconds: [],
  };

  let capture: CellCapture = { outputs: [], stderr: '', asyncErrors: [] };
  // What a failure report names for each executed cell, by cell number.
  const executed = new Map<number, { executionCount: number; firstLine: string }>();
  // display_id → the output object it last wrote, across all cells (Jupyter semantics).
  const displays = new Map<string, DisplayDataOutput>();

  const appendStream = (name: 'stdout' | 'stderr', chunk: unknown) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8');
    if (name === 'stderr') capture.stderr += text;
    const last = capture.outputs[capture.outputs.length - 1];
    if (last?.output_type === 'stream' && last.name === name) last.text += text;
    else capture.outputs.push({ output_type: 'stream', name, text });
  };
  // Progress bars (lib/report) mark their displays; echo them to the terminal so a long cell
  // shows signs of life: one rewritten line on a TTY; in a log, a line every 10 s plus the final
  // state of each bar (else a short loop would show only its 0% line).
  const echoTty = process.stderr.isTTY === true;
  let lastEcho = -Infinity;
  let echoOpen = false;
  /** The latest line a log skipped, echoed when the cell ends if no later line was. */
  let skippedEcho: string | undefined;
  const echoProgress = (message: DisplayMessage) => {
    const meta = message.metadata?.deepalign as { progress?: boolean; final?: boolean } | undefined;
    const line = message.data['text/plain'];
    if (!meta?.progress || typeof line !== 'string') return;
    const now = performance.now();
    if (echoTty) {
      realStderrWrite(`\r    ${line}\x1b[K${meta.final ? '\n' : ''}`);
      echoOpen = !meta.final;
    } else if (meta.final || now - lastEcho >= 10_000) {
      realStderrWrite(`    ${line}\n`);
      lastEcho = now;
      skippedEcho = undefined;
    } else {
      skippedEcho = line;
    }
  };
  const closeEcho = () => {
    if (echoOpen) realStderrWrite('\n');
    else if (skippedEcho !== undefined) realStderrWrite(`    ${skippedEcho}\n`);
    echoOpen = false;
    skippedEcho = undefined;
  };
  const onDisplay = (message: DisplayMessage, update: boolean) => {
    echoProgress(message);
    const id = message.transient?.display_id;
    const existing = id ? displays.get(id) : undefined;
    if (update && existing) {
      existing.data = message.data;
      existing.metadata = message.metadata ?? {};
      return;
    }
    const output: DisplayDataOutput = { output_type: 'display_data', data: message.data, metadata: message.metadata ?? {} };
    capture.outputs.push(output);
    if (id) displays.set(id, output);
  };
  // Errors thrown from callbacks a cell left running (a promise nobody awaited, a timer) fail
  // the run, blamed on the cell that started the callback (see cellContext).
  let runningCell: number | undefined;
  const leftBy = (origin: number | undefined) =>
    origin !== undefined && origin !== runningCell ? ` (from a callback left running by cell ${origin})` : '';
  const onAsyncError = (reason: unknown) => {
    const origin = cellContext.getStore();
    capture.asyncErrors.push({ origin });
    appendStream('stderr', `Unhandled error${leftBy(origin)}: ${formatError(reason)}\n`);
  };
  // process.exit in a cell (or in lib code it calls) would end the run with the cell's exit code
  // before anything is written, and `npm run reproduce` would count exit 0 as a pass. Throw
  // instead, and record the call so that catching the error does not hide it.
  const realExit = process.exit;
  const refuseExit = (code?: number | string | null) => {
    const origin = cellContext.getStore();
    const who =
      origin === undefined ? 'code outside any cell' : origin === runningCell ? `cell ${origin}` : `a callback left running by cell ${origin}`;
    const message = `${who} called process.exit(${code ?? ''}); a notebook must not end the process`;
    capture.asyncErrors.push({ origin, message });
    throw new Error(message);
  };

  const patched = {
    stdout: (chunk: unknown) => (appendStream('stdout', chunk), true),
    stderr: (chunk: unknown) => (appendStream('stderr', chunk), true),
  };
  const originalWrites = { stdout: process.stdout.write, stderr: process.stderr.write };
  process.on('unhandledRejection', onAsyncError);
  process.on('uncaughtException', onAsyncError);
  process.exit = refuseExit as typeof process.exit;

  /** The failure for errors recorded while cell `current` ran (undefined: after the last cell). */
  const asyncFailure = (current: number | undefined, fallback: number): CellFailure | undefined => {
    const first = capture.asyncErrors[0];
    if (!first) return undefined;
    for (const { message } of capture.asyncErrors)
      if (message && !capture.stderr.includes(message)) capture.stderr += `\nError: ${message}\n`;
    const blamed = first.origin !== undefined && executed.has(first.origin) ? first.origin : undefined;
    const cellNumber = blamed ?? fallback;
    const when = current === undefined ? `after the last cell (${fallback}) finished` : `while cell ${current} ran`;
    const surfaced =
      blamed === current
        ? undefined
        : blamed === undefined
          ? `error from a callback of unknown origin, surfaced ${when}`
          : `error from a callback left running by cell ${blamed}, surfaced ${when}`;
    return {
      cellNumber,
      ...executed.get(cellNumber)!,
      errorText: capture.stderr.trim() || '(the cell failed without printing an error)',
      ...(surfaced ? { surfaced } : {}),
    };
  };

  const started = performance.now();
  const convs = lazyConverters();
  const executor = tslabExecutor.createExecutor(process.cwd(), convs, {
    log: (...args) => console.log(...args),
    error: (...args) => console.error(...args),
  });
  try {
    let executionCount = 0;
    const codeCells = cells.filter((c) => c.cell_type === 'code' && c.source.trim() !== '').length;
    for (const [index, cell] of cells.entries()) {
      // Jupyter (nbclient) skips empty code cells and leaves their execution_count null.
      if (cell.cell_type !== 'code' || cell.source.trim() === '') continue;
      executionCount += 1;
      cell.execution_count = executionCount;
      capture = { outputs: cell.outputs!, stderr: '', asyncErrors: [] };
      const firstLine = cell.source.trim().split('\n')[0]!.slice(0, 60);
      executed.set(index + 1, { executionCount, firstLine });
      runningCell = index + 1;
      const cellStart = performance.now();
      process.stdout.write = patched.stdout as typeof process.stdout.write;
      process.stderr.write = patched.stderr as typeof process.stderr.write;
      tslabJupyter.lastWriteDisplayData = onDisplay;
      let ok: boolean;
      let timedOut = false;
      const timer =
        options.cellTimeoutS === undefined
          ? undefined
          : setTimeout(() => {
              timedOut = true;
              executor.interrupt();
            }, options.cellTimeoutS * 1000);
      try {
        ok = await cellContext.run(index + 1, () => executor.execute(cell.source));
        // Let rejections from promises the cell dropped surface before we judge it.
        await new Promise((resolve) => setImmediate(resolve));
      } finally {
        clearTimeout(timer);
        process.stdout.write = originalWrites.stdout;
        process.stderr.write = originalWrites.stderr;
        runningCell = undefined;
      }
      if (timedOut) capture.stderr += `\ncell timeout: still running after ${options.cellTimeoutS}s (--cell-timeout), interrupted\n`;
      closeEcho();
      const secs = (performance.now() - cellStart) / 1000;
      result.cellSeconds.push(secs);
      for (const o of cell.outputs!) if (o.output_type === 'stream') o.text = foldCarriageReturns(o.text);
      const failure = asyncFailure(index + 1, index + 1);
      if (!ok || failure) {
        result.failure = failure ?? {
          cellNumber: index + 1,
          executionCount,
          errorText: capture.stderr.trim() || '(the cell failed without printing an error)',
          firstLine,
        };
        log(`  cell ${index + 1} [${executionCount}/${codeCells}] FAILED after ${secs.toFixed(1)}s`);
        break;
      }
      log(`  cell ${index + 1} [${executionCount}/${codeCells}] ok ${secs.toFixed(1)}s  ${firstLine}`);
    }
    if (!result.failure && executed.size > 0) {
      // Timers and promises the cells left running can still throw; judge the run after them.
      // Output they print now belongs to no cell: only the error text is kept, for the report.
      capture = { outputs: [], stderr: '', asyncErrors: [] };
      const stillPending = await drainLeftoverCallbacks(() => capture.asyncErrors.length > 0);
      result.failure = asyncFailure(undefined, Math.max(...executed.keys()));
      if (result.failure) log(`  FAILED after the last cell: ${result.failure.surfaced}`);
      else if (stillPending)
        log(`  note: timers are still pending ${DRAIN_LIMIT_MS} ms after the last cell; errors they throw later are not seen`);
    }
  } finally {
    // Handlers are removed only now, after the drain; scripts/nb.ts then writes the notebook and
    // exits synchronously, so no callback can run (and be missed) in between.
    process.stdout.write = originalWrites.stdout;
    process.stderr.write = originalWrites.stderr;
    process.exit = realExit;
    process.off('unhandledRejection', onAsyncError);
    process.off('uncaughtException', onAsyncError);
    executor.close();
  }
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

/** Runs a few event-loop turns (immediates, due timers and the rejections they cause), then
 * keeps polling while timers are pending, up to DRAIN_LIMIT_MS or until `stop()`. Returns
 * whether timers are still pending. */
async function drainLeftoverCallbacks(stop: () => boolean): Promise<boolean> {
  const started = performance.now();
  const turn = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  for (let i = 0; i < 3 && !stop(); i++) await turn(0);
  // Unref'd timers are not listed (they would not keep a notebook alive either).
  const pending = () => process.getActiveResourcesInfo().some((type) => type === 'Timeout' || type === 'Immediate');
  while (!stop() && pending() && performance.now() - started < DRAIN_LIMIT_MS) await turn(10);
  return !stop() && pending();
}

/** tslab's ConverterSet (not exported by tslab): the browser converter is built only if a
 * cell asks for `//%browser`, since each converter costs a TypeScript program. */
function lazyConverters() {
  let node: TslabConverter | undefined;
  let browser: TslabConverter | undefined;
  return {
    get node() {
      return (node ??= tslabConverter.createConverter({ isJS: false, isBrowser: false }));
    },
    get browser() {
      return (browser ??= tslabConverter.createConverter({ isJS: false, isBrowser: true }));
    },
    close() {
      node?.close();
      browser?.close();
    },
  };
}

/**
 * What is committed differs from what a live session shows: outputs may carry
 * `metadata.deepalign.omit_on_save` (dropped: e.g. the plotly bundle lib/report injects once per
 * session) or `metadata.deepalign.omit_mimes_on_save` (those MIME types dropped: e.g. the
 * interactive HTML of a figure that also has a PNG). See lib/report/figure.ts.
 */
export function prepareForSave(nb: Notebook): Notebook {
  const cells = nb.cells.map((cell) => {
    if (cell.cell_type !== 'code') return cell;
    const outputs: Output[] = [];
    for (const o of cell.outputs ?? []) {
      if (o.output_type !== 'display_data') {
        outputs.push(o);
        continue;
      }
      const { deepalign, ...metadata } = o.metadata as { deepalign?: { omit_on_save?: boolean; omit_mimes_on_save?: string[] } };
      if (deepalign?.omit_on_save) continue;
      const data = { ...o.data };
      for (const mime of deepalign?.omit_mimes_on_save ?? []) delete data[mime];
      outputs.push({ output_type: 'display_data', data, metadata });
    }
    return { ...cell, outputs };
  });
  return { ...nb, cells };
}
