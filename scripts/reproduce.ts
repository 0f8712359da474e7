// npm run reproduce [-- --fast] [notebooks...]
//
// Runs every notebook (notebooks/*.ipynb in name order, or those named) through scripts/nb.ts,
// one process per notebook, stopping at the first failure. Full settings by default, writing
// outputs into the notebooks and figures/; with --fast (what `npm test` uses) notebooks shrink
// their settings and write under tmp/fast/ instead. Prints the wall time of each and in total,
// then writes the reproduction report (figures/index.html; tmp/fast/figures/index.html in fast
// mode) from every results.json there. Without Chromium it says so once, before the first
// notebook: figures then get HTML only and the PNG/SVG already there are kept.
import { spawnSync } from 'node:child_process';
import { basename, join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chromiumNotice } from '../lib/report/figure.js';
import { writeReproductionReport } from '../lib/report/reproductionReport.js';
import { CHROMIUM_NOTICE_ENV, FAST_OUTPUT_DIR, REPO_ROOT } from './notebook/repo.js';
import { listNotebooks } from './notebook/list.js';

const args = process.argv.slice(2);
const fast = args.includes('--fast');
const named = args.filter((a) => a !== '--fast');
for (const a of named) if (a.startsWith('-')) throw new Error(`reproduce: unknown option ${a}; usage: npm run reproduce [-- --fast] [notebooks...]`);

const notebooks = listNotebooks(named);
const started = performance.now();
const timings: string[] = [];
const wallSeconds: Record<string, number> = {};
console.log(`reproduce: ${notebooks.length} notebook(s)${fast ? ' in fast mode (DEEPALIGN_FAST=1, outputs under tmp/fast/)' : ''}`);
const notice = chromiumNotice();
if (notice) console.log(notice);
for (const nb of notebooks) {
  const shown = relative(REPO_ROOT, nb);
  const t0 = performance.now();
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/nb.ts', nb, ...(fast ? ['--fast'] : [])], {
    cwd: REPO_ROOT,
    stdio: 'inherit',
    env: { ...process.env, [CHROMIUM_NOTICE_ENV]: 'shown' },
  });
  const secs = (performance.now() - t0) / 1000;
  timings.push(`  ${shown}  ${secs.toFixed(1)}s`);
  wallSeconds[basename(nb, '.ipynb')] = Math.round(secs * 10) / 10;
  if (run.status !== 0) {
    console.error(`reproduce: stopped: ${shown} failed (exit ${run.status ?? run.signal}); later notebooks were not run, and no report was written`);
    process.exit(1);
  }
}
console.log(timings.join('\n'));
console.log(`reproduce: all ${notebooks.length} notebook(s) ok, wall time ${((performance.now() - started) / 1000).toFixed(1)}s`);

// The report covers every results.json in the figures folder, not only the notebooks run now.
try {
  // Where scripts/nb.ts sent the figures and notebooks ($DEEPALIGN_FIGURES_DIR wins there too).
  const written = writeReproductionReport({
    figuresDir: process.env.DEEPALIGN_FIGURES_DIR ?? join(REPO_ROOT, ...(fast ? [FAST_OUTPUT_DIR, 'figures'] : ['figures'])),
    notebooksDir: join(REPO_ROOT, ...(fast ? [FAST_OUTPUT_DIR, 'notebooks'] : ['notebooks'])),
    wallSeconds,
  });
  console.log(`${written.note}; open it in a browser (no server needed)`);
} catch (error) {
  console.error(`reproduce: the notebooks ran, but writing the report failed: ${(error as Error).stack ?? error}`);
  process.exit(1);
}
