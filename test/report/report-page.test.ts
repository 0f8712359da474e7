// The reproduction report (figures/index.html) in a real headless Chromium (playwright-core with
// the Chromium the figures use), opened from disk: built from a small set of results.json files
// made here (one written by writeResults with its run block, one in the older format without it)
// and from the repository's real figures/. No page errors, every figure drawn (plotly's SVG, or
// the PNG where there is no figure JSON), the claims table equal to the results.json files.
// Screenshots go to tmp/report-test/.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { launchHeadlessChromium } from './headlessChromium.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  claimReason,
  collectReport,
  findChromium,
  formatObserved,
  plotlyBundlePath,
  saveFigure,
  splitPaper,
  writeReproductionReport,
  writeResults,
  type NotebookResults,
} from '../../lib/report/index.js';

const chromium = findChromium();
const SHOTS = resolve('tmp', 'report-test');
/** A 1×1 PNG. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');
const rate = (k: number, n: number, low: number, high: number) => ({ k, n, rate: k / n, low, high });

/** Two notebooks' outputs in a temp folder: figures/<stem>/... and notebooks/<stem>.ipynb. */
async function makeFixtures(): Promise<{ figures: string; notebooks: string }> {
  const root = mkdtempSync(join(tmpdir(), 'deepalign-report-'));
  const figures = join(root, 'figures');
  const notebooks = join(root, 'notebooks');
  mkdirSync(notebooks, { recursive: true });
  vi.spyOn(console, 'log').mockImplementation(() => {});
  // 10_alpha: written by writeResults now (run block: date, wall time, backend), a FAIL with its reason.
  writeResults(
    {
      notebook: '10_alpha',
      seed: 7,
      settings: { steps: 30, seeds: [0, 1, 2], decoding: { temperature: 0.9, topP: 0.6 } },
      metrics: { loss: 0.25 },
      claims: [
        {
          id: 'prefill_rises',
          paper: 'Qi et al. 2025, Table 2 (ASR 42.1% at 5 tokens)',
          expected: { rule: 'pooled lower bound at k=5 > upper bound at k=0', paper: { tokens: [5, 10], asr: [42.1, 51.5] } },
          observed: { k0: rate(0, 96, 0, 0.038), k5: rate(90, 96, 0.87, 0.97) },
          holds: true,
        },
        {
          id: 'keeps_utility',
          paper: 'Qi et al. 2025, Table 2 (AlpacaEval 51.8 -> 49.5%)',
          expected: 'utility lower bound >= aligned - 5 points',
          observed: { aligned: rate(96, 96, 0.96, 1), augmented: { mean: 0.8, std: 0.05, pooled: rate(230, 288, 0.75, 0.84) } },
          holds: false,
          reason: 'the augmented models lose 20 points of exact-match utility, far beyond 5',
        },
      ],
      run: { backend: 'cpu', wallSeconds: 83.4, date: '2026-12-01T10:00:00.000Z' },
    },
    { dir: figures },
  );
  await saveFigure({ data: [{ type: 'scatter', x: [0, 5, 10], y: [0, 90, 95], name: 'ASR' }], layout: { title: { text: 'ASR vs k' }, width: 480, height: 300 } }, '10_alpha/asr', {
    dir: figures,
    chromium: null,
  });
  writeFileSync(join(figures, '10_alpha', 'asr.csv'), 'k,asr\n0,0\n5,90\n');
  writeFileSync(join(notebooks, '10_alpha.ipynb'), JSON.stringify({ cells: [], metadata: {}, nbformat: 4, nbformat_minor: 5 }));

  // 11_beta: an older results.json (no run block); a FAIL without a reason; a PNG-only figure and
  // one whose HTML is not a saveFigure page (both fall back to the PNG); backend from the notebook.
  const beta: NotebookResults = {
    notebook: '11_beta',
    seed: 0,
    settings: { perTask: 8 },
    metrics: {},
    claims: [
      { id: 'kl_front', paper: 'Qi et al. 2025, Figure 1 (KL(aligned || base) largest at the first tokens)', expected: 'front/later ratio lower bound > 2', observed: { ratio: 31.4, low: 24, high: 41.1 }, holds: true },
      { id: 'gcg_cut', paper: 'sanity check', expected: { rule: 'augmented upper bound < aligned lower bound' }, observed: { aligned: rate(0, 96, 0, 0.038) }, holds: false },
    ],
  };
  mkdirSync(join(figures, '11_beta'), { recursive: true });
  writeFileSync(join(figures, '11_beta', 'results.json'), JSON.stringify(beta, null, 2) + '\n');
  writeFileSync(join(figures, '11_beta', 'png_only.png'), PNG);
  writeFileSync(join(figures, '11_beta', 'foreign.html'), '<html><body>not a saveFigure page</body></html>');
  writeFileSync(join(figures, '11_beta', 'foreign.png'), PNG);
  writeFileSync(
    join(notebooks, '11_beta.ipynb'),
    JSON.stringify({
      cells: [
        { cell_type: 'code', source: '', metadata: {}, execution_count: 1, outputs: [{ output_type: 'stream', name: 'stdout', text: ['engine: wasm (tfjs 4.22.0, node 20, linux-x64)\n'] }] },
        { cell_type: 'code', source: '', metadata: {}, execution_count: 2, outputs: [{ output_type: 'display_data', metadata: {}, data: { 'text/plain': ['figure 11_beta/png_only: wrote figures/11_beta/png_only.png'] } }] },
      ],
      metadata: {},
      nbformat: 4,
      nbformat_minor: 5,
    }),
  );
  // A folder without results.json is not a notebook's.
  mkdirSync(join(figures, 'scratch'));
  writeFileSync(join(figures, 'scratch', 'x.png'), PNG);
  return { figures, notebooks };
}

/** Claims as the results.json files under `figures` list them (notebook folders in name order). */
function claimsOnDisk(figures: string) {
  return readdirSync(figures, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(figures, e.name, 'results.json')))
    .map((e) => e.name)
    .sort()
    .flatMap((stem) =>
      (JSON.parse(readFileSync(join(figures, stem, 'results.json'), 'utf8')) as NotebookResults).claims.map((c) => ({
        notebook: stem,
        id: c.id,
        paper: c.paper,
        verdict: c.holds ? 'PASS' : 'FAIL',
      })),
    );
}

interface PageCheck {
  errors: string[];
  rows: { notebook: string; id: string; paper: string; verdict: string; badge: string; reason: string }[];
  figures: { name: string; state: string; svg: boolean; pngLoaded: boolean }[];
  badges: { text: string; fontSize: string; fontWeight: string; color: string; background: string; visible: boolean }[];
  runs: { notebook: string; text: string }[];
}

async function openReport(browser: Browser, html: string, shot: string): Promise<PageCheck> {
  const page: Page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
  // No network: anything but file:// (and inline data) is an error.
  await page.route(/^(?!file:|data:)/, (route) => {
    errors.push(`network: ${route.request().url()}`);
    return route.abort();
  });
  try {
    await page.goto(pathToFileURL(html).href);
    await page.waitForFunction('document.body.getAttribute("data-rendered") === "true"', undefined, { timeout: 30_000 });
    const check = (await page.evaluate(`(() => {
      const rows = [...document.querySelectorAll('#claims-table tbody tr.claim')].map((tr) => ({
        notebook: tr.dataset.notebook, id: tr.dataset.claimId, paper: tr.dataset.paper, verdict: tr.dataset.verdict,
        badge: tr.querySelector('td.verdict .badge').textContent.trim(),
        reason: (tr.querySelector('td.verdict .reason') || { textContent: '' }).textContent.trim(),
      }));
      const figures = [...document.querySelectorAll('figure.figure[data-figure]')].map((f) => {
        const img = f.querySelector('img');
        return { name: f.dataset.figure, state: f.dataset.state, svg: !!f.querySelector('.plot svg.main-svg'),
          pngLoaded: !!img && img.complete && img.naturalWidth > 0 && getComputedStyle(img).display !== 'none' };
      });
      const badges = [...document.querySelectorAll('#claims-table td.verdict .badge')].map((b) => {
        const s = getComputedStyle(b); const r = b.getBoundingClientRect();
        return { text: b.textContent.trim(), fontSize: s.fontSize, fontWeight: s.fontWeight, color: s.color, background: s.backgroundColor, visible: r.width > 0 && r.height > 0 };
      });
      const runs = [...document.querySelectorAll('#runs-table tbody tr.run')].map((tr) => ({ notebook: tr.dataset.notebook, text: tr.textContent.replace(/\\s+/g, ' ') }));
      return { rows, figures, badges, runs };
    })()`)) as Omit<PageCheck, 'errors'>;
    await page.screenshot({ path: shot });
    return { errors, ...check };
  } finally {
    await page.close();
  }
}

function expectSameClaims(check: PageCheck, figures: string): void {
  const onDisk = claimsOnDisk(figures);
  expect(onDisk.length).toBeGreaterThan(0);
  expect(check.rows.map(({ notebook, id, paper, verdict }) => ({ notebook, id, paper, verdict }))).toEqual(onDisk);
  for (const row of check.rows) {
    expect(row.badge).toBe(row.verdict);
    // Every FAIL says why, in one sentence.
    if (row.verdict === 'FAIL') expect(row.reason).toMatch(/^\S.*[.!?]$/);
  }
}

function expectAllDrawn(check: PageCheck): void {
  expect(check.errors).toEqual([]);
  for (const fig of check.figures) {
    const drawn = (fig.state === 'plotly' && fig.svg) || (fig.state === 'png' && fig.pngLoaded);
    expect(drawn, `${fig.name}: ${JSON.stringify(fig)}`).toBe(true);
  }
}

describe.skipIf(!chromium.path)('the reproduction report in headless Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    browser = await launchHeadlessChromium(chromium.path!);
  });
  afterAll(async () => {
    await browser?.close();
    vi.restoreAllMocks();
  });

  it('fixtures: claims, verdicts with reasons, run details, figures and links', async () => {
    const { figures, notebooks } = await makeFixtures();
    const written = writeReproductionReport({ figuresDir: figures, notebooksDir: notebooks, wallSeconds: { '11_beta': 5.5, '10_alpha': 1 } });
    expect(written).toMatchObject({ path: join(figures, 'index.html'), notebooks: 2, claims: 4, passed: 2, failed: 2, figures: 3 });
    const html = readFileSync(written.path, 'utf8');
    // plotly.js inlined once; nothing loaded from elsewhere.
    const bundleHead = readFileSync(plotlyBundlePath(), 'utf8').slice(0, 200);
    expect(html.split(bundleHead).length - 1).toBe(1);
    expect(html).not.toMatch(/<script[^>]+src=/);

    const check = await openReport(browser, written.path, join(SHOTS, 'fixtures.png'));
    expectAllDrawn(check);
    expectSameClaims(check, figures);
    expect(check.figures.map((f) => [f.name, f.state])).toEqual([
      ['10_alpha/asr', 'plotly'],
      ['11_beta/png_only', 'png'],
      ['11_beta/foreign', 'png'],
    ]);
    const reasons = Object.fromEntries(check.rows.map((r) => [r.id, r.reason]));
    expect(reasons.keeps_utility).toBe('The augmented models lose 20 points of exact-match utility, far beyond 5.');
    expect(reasons.gcg_cut).toBe('Not met: augmented upper bound < aligned lower bound.');
    expect(reasons.prefill_rises).toBe('');
    // FAIL as visible as PASS: same badge size and weight, different colours.
    const pass = check.badges.find((b) => b.text === 'PASS')!;
    const fail = check.badges.find((b) => b.text === 'FAIL')!;
    expect(fail.visible && pass.visible).toBe(true);
    expect([fail.fontSize, fail.fontWeight]).toEqual([pass.fontSize, pass.fontWeight]);
    expect(fail.background).not.toBe(pass.background);
    // Runs: seed, backend, date, wall time (recorded, or measured by reproduce for the older file).
    const runs = Object.fromEntries(check.runs.map((r) => [r.notebook, r.text]));
    expect(runs['10_alpha']).toContain('cpu');
    expect(runs['10_alpha']).toContain('2026-12-01 10:00 UTC');
    expect(runs['10_alpha']).toContain('1 min 23 s');
    expect(runs['10_alpha']).toContain('steps=30 · seeds=0, 1, 2 · decoding={temperature, topP}');
    expect(runs['11_beta']).toContain('wasm (notebook output)');
    expect(runs['11_beta']).toContain('5.5 s (measured by reproduce)');
    expect(runs['11_beta']).toContain('results.json file time');
    // Relative links to the notebook, results.json and the CSV tables.
    expect(html).toContain('href="../notebooks/10_alpha.ipynb"');
    expect(html).toContain('href="10_alpha/asr.csv"');
    expect(html).toContain('href="11_beta/results.json"');
    // The failing claims are listed at the top, linking to their rows.
    expect(html).toContain('<p class="failing">FAIL: <a href="#claim-10_alpha-keeps_utility">10_alpha/keeps_utility</a>, <a href="#claim-11_beta-gcg_cut">11_beta/gcg_cut</a></p>');
  }, 30_000);

  it("the repository's figures/: every notebook's claims and figures", async () => {
    const out = join(SHOTS, 'real', 'index.html');
    const written = writeReproductionReport({ figuresDir: 'figures', notebooksDir: 'notebooks', out });
    expect(written.notebooks).toBeGreaterThan(0);
    const check = await openReport(browser, out, join(SHOTS, 'figures.png'));
    expectAllDrawn(check);
    expectSameClaims(check, resolve('figures'));
    // Every figure with an HTML page in figures/ is drawn by plotly.
    const pages = readdirSync('figures', { recursive: true, encoding: 'utf8' }).filter((f) => /^[^/]+\/.+\.html$/.test(f) && existsSync(join('figures', f.split('/')[0]!, 'results.json')));
    expect(check.figures.filter((f) => f.state === 'plotly').map((f) => f.name).sort()).toEqual(pages.map((p) => p.replace(/\.html$/, '')).sort());
    expect(collectReport({ figuresDir: 'figures' }).notebooks.every((nb) => nb.problems.length === 0)).toBe(true);
  }, 30_000);
});

describe('claim formatting', () => {
  it('shows rates with their Wilson interval, pooled seeds with mean ± std, estimates with their interval', () => {
    expect(formatObserved({ noPrefix: rate(358, 576, 0.5812, 0.6602) })).toEqual(['noPrefix: 62.2% [58.1, 66.0] (358/576)']);
    expect(formatObserved({ mean: 0.8681, std: 0.0421, pooled: rate(500, 576, 0.838, 0.8933), perTrainingSeed: [0.906, 0.875, 0.823] })).toEqual([
      '86.8% [83.8, 89.3] (500/576) pooled, mean 86.8 ± 4.2%',
      'perTrainingSeed: 0.906, 0.875, 0.823',
    ]);
    expect(formatObserved({ ratio: 31.36, low: 23.97, high: 41.11, front: 0.3435 })).toEqual(['31.36 [23.97, 41.11]', 'front: 0.3435']);
    expect(formatObserved(0.997987)).toEqual(['0.998']);
    expect(formatObserved({ a: { b: { c: { d: 1 } } } })).toEqual(['a.b.c: {…}']);
    expect(formatObserved(Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`k${i}`, i])), 8)).toHaveLength(8);
  });

  it('splits the paper into source and its numbers, and words a reason for every FAIL', () => {
    expect(splitPaper('Qi et al. 2025, Figure 1 (per-token KL(aligned || base) is largest first)')).toEqual({
      source: 'Qi et al. 2025, Figure 1',
      detail: 'per-token KL(aligned || base) is largest first',
    });
    expect(splitPaper('sanity check')).toEqual({ source: 'sanity check' });
    const claim = { id: 'x', paper: 'p', expected: { rule: 'a < b' }, observed: 1, holds: false };
    expect(claimReason(claim)).toBe('Not met: a < b.');
    expect(claimReason({ ...claim, observed: { testable: false } })).toBe('Not testable in this run: a < b.');
    expect(claimReason({ ...claim, observed: { reason: 'the suffix does not work' } })).toBe('The suffix does not work.');
    expect(claimReason({ ...claim, reason: 'Because.' })).toBe('Because.');
    expect(claimReason({ ...claim, holds: true })).toBe('');
  });

  it('shows what is wrong with a damaged results.json instead of failing the whole page', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-report-bad-'));
    mkdirSync(join(dir, '20_bad'));
    writeFileSync(join(dir, '20_bad', 'results.json'), '{ "notebook": "20_bad", "seed": 0, "claims": [');
    mkdirSync(join(dir, '21_odd'));
    writeFileSync(join(dir, '21_odd', 'results.json'), JSON.stringify({ notebook: '21_odd', seed: 0.5, settings: {}, metrics: {}, claims: [null, { id: 'a', paper: 'p', expected: 1, observed: 1, holds: true }] }));
    const report = collectReport({ figuresDir: dir, notebooksDir: dir });
    expect(report.notebooks.map((nb) => [nb.stem, nb.results?.claims.length ?? null])).toEqual([['20_bad', null], ['21_odd', 1]]);
    expect(report.notebooks[0]!.problems[0]).toMatch(/^cannot read results.json: /);
    expect(report.notebooks[1]!.problems).toEqual(['`seed` must be an integer, got 0.5']);
    const written = writeReproductionReport({ figuresDir: dir, notebooksDir: dir });
    expect(written).toMatchObject({ notebooks: 2, claims: 1, passed: 1, failed: 0 });
    expect(readFileSync(written.path, 'utf8')).toContain('<p class="problem">results.json: cannot read results.json: ');
  });
});
