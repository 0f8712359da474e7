// npm run test:jupyter [notebooks...]
//
// Runs the notebooks under real Jupyter (`jupyter nbconvert --execute` with the deepalign tslab
// kernel) in fast mode, to check they work outside our runner too. The kernel spec goes into a
// private JUPYTER_PATH under tmp/, so no prior `npm run kernel:install` is needed; executed
// notebooks and figures go to tmp/fast/jupyter/ (never over committed ones).
//
// Without jupyter-nbconvert this prints why and exits 0, unless DEEPALIGN_REQUIRE_JUPYTER=1
// (set by .ci/run), where it fails.
import { spawnSync } from 'node:child_process';
import { join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { RUN_STARTED_ENV } from '../lib/report/results.js';
import { KERNEL_NAME, writeKernelSpec } from './notebook/kernelspec.js';
import { FAST_OUTPUT_DIR, REPO_ROOT } from './notebook/repo.js';
import { listNotebooks } from './notebook/list.js';

const outDir = join(REPO_ROOT, FAST_OUTPUT_DIR, 'jupyter');
const probe = spawnSync('jupyter', ['nbconvert', '--version'], { encoding: 'utf8' });
if (probe.status !== 0) {
  const why = 'jupyter nbconvert not found (Debian: apt-get install jupyter-nbconvert python3-nbclient python3-ipykernel jupyter-client)';
  if (process.env.DEEPALIGN_REQUIRE_JUPYTER === '1') {
    console.error(`test:jupyter: FAILED: ${why}`);
    process.exit(1);
  }
  console.log(`test:jupyter: skipped: ${why}`);
  process.exit(0);
}

const jupyterPath = join(REPO_ROOT, 'tmp', 'jupyter-data');
writeKernelSpec(jupyterPath);
const env = {
  ...process.env,
  JUPYTER_PATH: [jupyterPath, process.env.JUPYTER_PATH].filter(Boolean).join(':'),
  DEEPALIGN_FAST: '1',
  DEEPALIGN_FIGURES_DIR: join(outDir, 'figures'),
  // Silence debugpy's frozen-modules warning that ipykernel's Python prints on every start.
  PYDEVD_DISABLE_FILE_VALIDATION: '1',
};
// The kernel must be visible to Jupyter under its name (what `jupyter kernelspec list` shows).
const specs = spawnSync('jupyter', ['kernelspec', 'list', '--json'], { env, encoding: 'utf8' });
const listed = specs.status === 0 ? Object.keys((JSON.parse(specs.stdout) as { kernelspecs: Record<string, unknown> }).kernelspecs) : [];
if (!listed.includes(KERNEL_NAME)) {
  console.error(`test:jupyter: FAILED: jupyter kernelspec list does not show "${KERNEL_NAME}" (it shows: ${listed.join(', ') || specs.stderr})`);
  process.exit(1);
}
// Same per-cell limit as our runner's --cell-timeout; none by default.
const cellTimeout = process.env.DEEPALIGN_CELL_TIMEOUT_S ?? '-1';
const notebooks = listNotebooks(process.argv.slice(2));
const started = performance.now();
for (const nb of notebooks) {
  const shown = relative(REPO_ROOT, nb);
  const t0 = performance.now();
  const run = spawnSync(
    'jupyter',
    ['nbconvert', '--to', 'notebook', '--execute', `--ExecutePreprocessor.kernel_name=${KERNEL_NAME}`, `--ExecutePreprocessor.timeout=${cellTimeout}`, '--output-dir', outDir, nb],
    // The kernel inherits the run's start, for results.json's run.wallSeconds.
    { cwd: REPO_ROOT, env: { ...env, [RUN_STARTED_ENV]: String(Date.now()) }, encoding: 'utf8' },
  );
  const secs = ((performance.now() - t0) / 1000).toFixed(1);
  if (run.status !== 0) {
    // nbclient's CellExecutionError names the cell source and (through our kernel) its error.
    const tail = (run.stderr || '').split('\n').filter((l) => !/^\s+\^+$/.test(l)).slice(-30).join('\n');
    console.error(`test:jupyter: ${shown} FAILED under jupyter nbconvert after ${secs}s:\n${tail}`);
    process.exit(1);
  }
  console.log(`test:jupyter: ${shown} ok under jupyter nbconvert in ${secs}s`);
}
console.log(`test:jupyter: all ${notebooks.length} notebook(s) ok, wall time ${((performance.now() - started) / 1000).toFixed(1)}s`);
