// npm run nb -- notebooks/<name>.ipynb [--fast] [--out <path>] [--no-write] [--clean] [--cell-timeout S]
//
// Executes one notebook headless (tslab's compiler and executor, in this process, working
// directory = repository root) and writes its outputs back into the .ipynb. Exits 1 naming the
// notebook, the cell and its error when a cell fails; the notebook file is then left untouched,
// as `jupyter nbconvert --execute --inplace` does.
//
// --fast     sets DEEPALIGN_FAST=1 (notebooks shrink their settings; CI uses this) and sends
//            figures and the executed notebook under tmp/fast/, so the committed full-size
//            outputs are never overwritten by a smoke run.
// --out P    write the executed notebook to P instead of in place.
// --no-write execute only.
// --cell-timeout S  fail a cell still awaiting after S seconds (also $DEEPALIGN_CELL_TIMEOUT_S).
// --clean    do not execute: only drop live-only outputs (the plotly bundle and interactive HTML a
//            Jupyter session saved) and rewrite in the committed format. For notebooks saved from
//            Jupyter, before committing them.
import { mkdirSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chromiumNotice } from '../lib/report/figure.js';
import { RUN_STARTED_ENV } from '../lib/report/results.js';
import { readNotebook, writeNotebook } from './notebook/ipynb.js';
import { CHROMIUM_NOTICE_ENV, FAST_OUTPUT_DIR, REPO_ROOT } from './notebook/repo.js';
import { prepareForSave, runNotebook } from './notebook/runner.js';

/** Repo-relative for files in the repository, absolute for anything outside it. */
function shownPath(path: string): string {
  const inRepo = relative(REPO_ROOT, path);
  return inRepo.startsWith('..') ? path : inRepo;
}

function usage(message: string): never {
  process.stderr.write(`nb: ${message}\nusage: npm run nb -- notebooks/<name>.ipynb [--fast] [--out <path>] [--no-write] [--clean] [--cell-timeout S]\n`);
  process.exit(2);
}

/** A positive number of seconds, or a usage error naming where the value came from and its raw text. */
function parseSeconds(raw: string | undefined, source: string): number {
  const seconds = raw === undefined || raw.trim() === '' ? NaN : Number(raw);
  if (!(seconds > 0) || !Number.isFinite(seconds)) {
    usage(`${source} must be a positive number of seconds (e.g. 900), got ${raw === undefined ? 'nothing' : JSON.stringify(raw)}`);
  }
  return seconds;
}

function parseArgs(argv: string[]) {
  const args = {
    notebook: '',
    fast: false,
    out: undefined as string | undefined,
    write: true,
    clean: false,
    cellTimeoutS: undefined as number | undefined,
  };
  const envTimeout = process.env.DEEPALIGN_CELL_TIMEOUT_S;
  if (envTimeout) args.cellTimeoutS = parseSeconds(envTimeout, 'DEEPALIGN_CELL_TIMEOUT_S');
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--fast') args.fast = true;
    else if (arg === '--no-write') args.write = false;
    else if (arg === '--clean') args.clean = true;
    else if (arg === '--cell-timeout') args.cellTimeoutS = parseSeconds(argv[++i], '--cell-timeout');
    else if (arg === '--out') args.out = argv[++i] ?? usage('--out needs a path');
    else if (arg.startsWith('-')) usage(`unknown option ${arg}`);
    else if (args.notebook) usage(`one notebook per run (got ${args.notebook} and ${arg}); use npm run reproduce for several`);
    else args.notebook = arg;
  }
  if (!args.notebook) usage('no notebook given');
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  // Resolve paths against the caller's directory, then move to the repo root for tslab.
  const notebookPath = resolve(args.notebook);
  const shown = shownPath(notebookPath);
  let outPath = args.out ? resolve(args.out) : notebookPath;
  process.chdir(REPO_ROOT);
  process.env.DEEPALIGN_NOTEBOOK = shown;
  if (args.fast) {
    process.env.DEEPALIGN_FAST = '1';
    process.env.DEEPALIGN_FIGURES_DIR ??= join(REPO_ROOT, FAST_OUTPUT_DIR, 'figures');
    if (!args.out) outPath = join(REPO_ROOT, FAST_OUTPUT_DIR, 'notebooks', basename(notebookPath));
  }

  let notebook;
  try {
    notebook = readNotebook(notebookPath);
  } catch (error) {
    usage((error as Error).message);
  }
  if (args.clean) {
    writeNotebook(outPath, prepareForSave(notebook));
    process.stderr.write(`nb: cleaned ${shown} (not executed) -> ${shownPath(outPath)}\n`);
    process.exit(0);
  }
  // The run's start, for results.json's run.wallSeconds (writeResults reads it).
  process.env[RUN_STARTED_ENV] = String(Math.round(performance.timeOrigin));
  // Said once per run (npm run reproduce says it before its first notebook and sets this).
  if (process.env[CHROMIUM_NOTICE_ENV] !== 'shown') {
    const notice = chromiumNotice();
    if (notice) process.stderr.write(`${notice}\n`);
  }
  process.stderr.write(`nb: running ${shown}${args.fast ? ' (fast)' : ''}\n`);
  const result = await runNotebook(notebook, { cellTimeoutS: args.cellTimeoutS });

  if (result.failure) {
    const f = result.failure;
    const indented = f.errorText.replace(/^/gm, '    ');
    const what = f.surfaced ? `: ${f.surfaced}` : '';
    process.stderr.write(
      `nb: ${shown} failed at cell ${f.cellNumber} (execution ${f.executionCount}, "${f.firstLine}")${what}:\n${indented}\n`,
    );
    process.exit(1);
  }
  if (args.write) {
    mkdirSync(dirname(outPath), { recursive: true });
    writeNotebook(outPath, prepareForSave(result.notebook));
  }
  const where = args.write ? ` -> ${shownPath(outPath)}` : '';
  process.stderr.write(`nb: ${shown} ok in ${result.seconds.toFixed(1)}s${where}\n`);
  // Exit explicitly: a notebook may leave timers or a browser handle alive.
  process.exit(0);
}

main().catch((error) => {
  process.stderr.write(`nb: internal error: ${(error as Error).stack ?? error}\n`);
  process.exit(2);
});
