// npm run reproduce [-- --fast] [notebooks...]
//
// Runs every notebook (notebooks/*.ipynb in name order, or those named) through scripts/nb.ts,
// one process per notebook, stopping at the first failure. Full settings by default, writing
// outputs into the notebooks and figures/; with --fast (what `npm test` uses) notebooks shrink
// their settings and write under tmp/fast/ instead. Prints the wall time of each and in total.
import { spawnSync } from 'node:child_process';
import { relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { REPO_ROOT } from './notebook/repo.js';
import { listNotebooks } from './notebook/list.js';

const args = process.argv.slice(2);
const fast = args.includes('--fast');
const named = args.filter((a) => a !== '--fast');
for (const a of named) if (a.startsWith('-')) throw new Error(`reproduce: unknown option ${a}; usage: npm run reproduce [-- --fast] [notebooks...]`);

const notebooks = listNotebooks(named);
const started = performance.now();
const timings: string[] = [];
console.log(`reproduce: ${notebooks.length} notebook(s)${fast ? ' in fast mode (DEEPALIGN_FAST=1, outputs under tmp/fast/)' : ''}`);
for (const nb of notebooks) {
  const shown = relative(REPO_ROOT, nb);
  const t0 = performance.now();
  const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/nb.ts', nb, ...(fast ? ['--fast'] : [])], {
    cwd: REPO_ROOT,
    stdio: 'inherit',
  });
  const secs = (performance.now() - t0) / 1000;
  timings.push(`  ${shown}  ${secs.toFixed(1)}s`);
  if (run.status !== 0) {
    console.error(`reproduce: stopped: ${shown} failed (exit ${run.status ?? run.signal}); later notebooks were not run`);
    process.exit(1);
  }
}
console.log(timings.join('\n'));
console.log(`reproduce: all ${notebooks.length} notebook(s) ok, wall time ${((performance.now() - started) / 1000).toFixed(1)}s`);
