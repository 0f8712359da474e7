// npm run report [-- --fast] [--dir <figures>] [--notebooks <dir>] [--out <file>] [--link-plotly] [--screenshot <png>]
//
// Writes the reproduction report (figures/index.html) from the results.json, figures and CSV
// tables already under figures/ (what `npm run reproduce` also does at its end); see
// lib/report/reproductionReport.ts. --fast reads a fast run's outputs under tmp/fast/ instead.
// --screenshot also opens the page in headless Chromium and saves a PNG of its top (the README's
// picture: npm run report -- --screenshot docs/report-page.png).
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { closeBrowser } from '../lib/report/figure.js';
import { screenshotReport, writeReproductionReport } from '../lib/report/reproductionReport.js';
import { FAST_OUTPUT_DIR, REPO_ROOT } from './notebook/repo.js';

function usage(message: string): never {
  process.stderr.write(
    `report: ${message}\nusage: npm run report -- [--fast] [--dir <figures>] [--notebooks <dir>] [--out <file>] [--link-plotly] [--screenshot <png>]\n`,
  );
  process.exit(2);
}

const argv = process.argv.slice(2);
const opts: { fast: boolean; dir?: string; notebooks?: string; out?: string; link: boolean; screenshot?: string } = { fast: false, link: false };
for (let i = 0; i < argv.length; i++) {
  const arg = argv[i]!;
  const value = () => argv[++i] ?? usage(`${arg} needs a value`);
  if (arg === '--fast') opts.fast = true;
  else if (arg === '--dir') opts.dir = resolve(value());
  else if (arg === '--notebooks') opts.notebooks = resolve(value());
  else if (arg === '--out') opts.out = resolve(value());
  else if (arg === '--link-plotly') opts.link = true;
  else if (arg === '--screenshot') opts.screenshot = resolve(value());
  else usage(`unknown argument ${arg}`);
}

process.chdir(REPO_ROOT);
const figuresDir = opts.dir ?? (opts.fast ? join(REPO_ROOT, FAST_OUTPUT_DIR, 'figures') : (process.env.DEEPALIGN_FIGURES_DIR ?? join(REPO_ROOT, 'figures')));
const notebooksDir = opts.notebooks ?? join(REPO_ROOT, ...(opts.fast ? [FAST_OUTPUT_DIR, 'notebooks'] : ['notebooks']));
const written = writeReproductionReport({ figuresDir, notebooksDir, out: opts.out, plotly: opts.link ? 'link' : 'inline' });
if (written.notebooks === 0) console.warn(`report: no <notebook>/results.json under ${figuresDir}; run npm run reproduce first`);
console.log(written.note);
if (opts.screenshot) {
  mkdirSync(dirname(opts.screenshot), { recursive: true });
  try {
    const { errors } = await screenshotReport(written.path, opts.screenshot);
    console.log(`report: screenshot ${opts.screenshot}${errors.length ? `; page errors: ${errors.join(' | ')}` : ''}`);
    if (errors.length) process.exitCode = 1;
  } finally {
    await closeBrowser();
  }
}
