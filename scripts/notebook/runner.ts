// Executes a notebook in this process with tslab's own converter and executor (the code the
// tslab Jupyter kernel runs), so a notebook behaves the same here and under Jupyter, and no
// Python is needed. Streams, display data (including in-place display updates, which progress
// bars use) and execution counts are collected per cell and written back as nbformat outputs.
//
// One notebook per process: tslab's executor keeps cell globals in a process-wide object and
// we patch process.stdout/stderr, so scripts/nb.ts runs one notebook and exits.
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
  /** 1-based index among all cells of the notebook (what a reader counts in Jupyter). */
  cellNumber: number;
  executionCount: number;
  /** The TypeScript diagnostics or the stack trace, as the cell printed them to stderr. */
  errorText: string;
  firstLine: string;
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
  asyncErrors: unknown[];
}

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
  // shows signs of life: one rewritten line on a TTY, a line every 10 s in a log.
  const echoTty = process.stderr.isTTY === true;
  let lastEcho = -Infinity;
  let echoOpen = false;
  const echoProgress = (message: DisplayMessage) => {
    const meta = message.metadata?.deepalign as { progress?: boolean } | undefined;
    const line = message.data['text/plain'];
    if (!meta?.progress || typeof line !== 'string') return;
    const now = performance.now();
    if (echoTty) {
      realStderrWrite(`\r    ${line}\x1b[K`);
      echoOpen = true;
    } else if (now - lastEcho >= 10_000) {
      realStderrWrite(`    ${line}\n`);
      lastEcho = now;
    }
  };
  const closeEcho = () => {
    if (echoOpen) realStderrWrite('\n');
    echoOpen = false;
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
  // Errors thrown from callbacks a cell left running (a promise nobody awaited, a timer) belong
  // to the cell being executed when they surface; they fail that cell.
  const onAsyncError = (reason: unknown) => {
    capture.asyncErrors.push(reason);
    appendStream('stderr', `Unhandled error: ${formatError(reason)}\n`);
  };

  const patched = {
    stdout: (chunk: unknown) => (appendStream('stdout', chunk), true),
    stderr: (chunk: unknown) => (appendStream('stderr', chunk), true),
  };
  const originalWrites = { stdout: process.stdout.write, stderr: process.stderr.write };
  process.on('unhandledRejection', onAsyncError);
  process.on('uncaughtException', onAsyncError);

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
        ok = await executor.execute(cell.source);
        // Let rejections from promises the cell dropped surface before we judge it.
        await new Promise((resolve) => setImmediate(resolve));
      } finally {
        clearTimeout(timer);
        process.stdout.write = originalWrites.stdout;
        process.stderr.write = originalWrites.stderr;
      }
      if (timedOut) capture.stderr += `\ncell timeout: still running after ${options.cellTimeoutS}s (--cell-timeout), interrupted\n`;
      closeEcho();
      const secs = (performance.now() - cellStart) / 1000;
      result.cellSeconds.push(secs);
      for (const o of cell.outputs!) if (o.output_type === 'stream') o.text = foldCarriageReturns(o.text);
      const firstLine = cell.source.trim().split('\n')[0]!.slice(0, 60);
      if (!ok || capture.asyncErrors.length > 0) {
        result.failure = {
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
  } finally {
    process.stdout.write = originalWrites.stdout;
    process.stderr.write = originalWrites.stderr;
    process.off('unhandledRejection', onAsyncError);
    process.off('uncaughtException', onAsyncError);
    executor.close();
  }
  result.seconds = (performance.now() - started) / 1000;
  return result;
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
