// npm run play [-- --port <n>] [--open] [--models aligned,augmented,presto,base,<name>=<dir>,...]
//              [--organism <dir>] [--augmentation <dir>] [--defences <dir>] [--per-task <n>] [--seed <n>]
//              [--prefill <text>] [--screenshot <png>]
//
// Rank-assisted prefilling by hand in the browser: starts a local server on 127.0.0.1 (a random
// free port unless --port) that serves the page and runs the models in Node (see
// lib/experiments/playServer.ts), prints its URL and waits (Ctrl-C ends it). --open also opens the
// page in the default browser. Models: the aligned organism, notebook 05's augmented model and
// notebook 08's augmented + PRESTO model (35 steps, training seed 1) when their caches hold them
// (a missing one is named, with the command that builds it), or any organism checkpoint folders
// given as name=dir. --screenshot plays a few helper steps in headless Chromium, saves a PNG of the
// page (the README's picture: npm run play -- --screenshot docs/play-page.png) and exits.
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { initEngine, formatEngineReport } from '../lib/engine/index.js';
import { parsePlayModels, startPlayServer, type PlayModelRequest, type PlayServer } from '../lib/experiments/index.js';
import { closeBrowser, findChromium, withChromium } from '../lib/report/figure.js';
import { writeFileAtomic } from '../lib/io/index.js';
import { REPO_ROOT } from './notebook/repo.js';

const USAGE =
  'usage: npm run play -- [--port <n>] [--open] [--models aligned,augmented,presto,base,<name>=<dir>,...] [--organism <dir>] ' +
  '[--augmentation <dir>] [--defences <dir>] [--per-task <n>] [--seed <n>] [--prefill <text>] [--screenshot <png>]';

function usage(message: string): never {
  process.stderr.write(`play: ${message}\n${USAGE}\n`);
  process.exit(2);
}

const argv = process.argv.slice(2);
const opts: {
  port?: number; open: boolean; models?: PlayModelRequest[]; organism?: string; augmentation?: string; defences?: string;
  perTask?: number; seed?: number; prefill?: string; screenshot?: string;
} = { open: false };
const int = (arg: string, v: string, min: number) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) usage(`${arg} must be an integer >= ${min}, not ${JSON.stringify(v)}`);
  return n;
};
for (let i = 0; i < argv.length; i++) {
  const arg = argv[i]!;
  const value = () => argv[++i] ?? usage(`${arg} needs a value`);
  if (arg === '--help' || arg === '-h') {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  } else if (arg === '--port') opts.port = int(arg, value(), 0);
  else if (arg === '--open') opts.open = true;
  else if (arg === '--models') {
    try {
      opts.models = parsePlayModels(value());
    } catch (err) {
      usage((err as Error).message);
    }
  } else if (arg === '--organism') opts.organism = value();
  else if (arg === '--augmentation') opts.augmentation = value();
  else if (arg === '--defences') opts.defences = value();
  else if (arg === '--per-task') opts.perTask = int(arg, value(), 1);
  else if (arg === '--seed') opts.seed = int(arg, value(), 0);
  else if (arg === '--prefill') opts.prefill = value();
  else if (arg === '--screenshot') opts.screenshot = resolve(value());
  else usage(`unknown argument ${arg}`);
}
if (opts.port !== undefined && opts.port > 65535) usage('--port must be at most 65535');

process.chdir(REPO_ROOT);
const engine = await initEngine();
console.log(formatEngineReport(engine).split('\n')[0]);
const server = await startPlayServer({
  port: opts.port, models: opts.models, organismDir: opts.organism, augmentationDir: opts.augmentation, defencesDir: opts.defences,
  behaviours: { perTask: opts.perTask, seed: opts.seed }, prefill: opts.prefill,
});
const offered = server.models.filter((m) => m.available).map((m) => m.label);
console.log(`play: ${server.requests.length} held-out harmful requests; models: ${offered.join(', ')}`);

if (opts.screenshot) {
  try {
    await screenshot(server, opts.screenshot);
  } finally {
    await closeBrowser();
    await server.close();
  }
  process.exit(process.exitCode ?? 0);
}

console.log(`play: open ${server.url} (Ctrl-C to stop)`);
if (opts.open) openInBrowser(server.url);
const stop = () => {
  console.log('\nplay: stopping');
  server.close().then(() => process.exit(0), () => process.exit(1));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);

function openInBrowser(url: string): void {
  const [cmd, args] = process.platform === 'darwin' ? ['open', [url]] : process.platform === 'win32' ? ['cmd', ['/c', 'start', '', url]] : ['xdg-open', [url]];
  const child = spawn(cmd, args, { stdio: 'ignore', detached: true });
  child.on('error', (err) => console.warn(`play: could not open a browser (${cmd}: ${err.message}); open ${url} yourself`));
  child.unref();
}

/** The README's picture: a request on the most augmented model offered, a few helper steps, the page's top. */
async function screenshot(s: PlayServer, png: string): Promise<void> {
  const chromium = findChromium();
  if (!chromium.path) throw new Error(`play --screenshot: ${chromium.reason}`);
  const model = ['augmented', 'presto', 'aligned'].find((n) => s.models.some((m) => m.name === n && m.available)) ?? s.models.find((m) => m.available)!.name;
  await withChromium(chromium.path, async (browser) => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1050 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    let version = 0;
    // Selectors, not waitForFunction: the page's CSP allows no eval.
    const settled = () => page.waitForSelector(`body[data-busy="false"]:not([data-version="${version++}"])`, { state: 'attached' });
    try {
      await page.goto(s.url);
      await page.waitForSelector('body[data-ready="true"]', { state: 'attached' });
      await page.selectOption('#request', s.requests[Math.min(9, s.requests.length - 1)].id);
      await page.check(`input[name=model][value="${model}"]`);
      await page.click('#start');
      await settled();
      for (let i = 0; i < 12; i++) {
        await page.click('#helper');
        await settled();
      }
      await page.click('#compare');
      await page.waitForSelector('#compare-table');
      const bytes = await page.screenshot({ fullPage: false });
      mkdirSync(dirname(png), { recursive: true });
      writeFileAtomic(png, bytes);
      console.log(`play: screenshot ${png} (${model}, ${s.requests[Math.min(9, s.requests.length - 1)].id})${errors.length ? `; page errors: ${errors.join(' | ')}` : ''}`);
      if (errors.length) process.exitCode = 1;
    } finally {
      await page.close();
    }
  });
}
