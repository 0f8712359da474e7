// Figures on a machine without Chromium: where findChromium looks (on a fake machine: PATH,
// snap, /opt, macOS apps, playwright's cache), the one message a run prints, and that a figure
// saved without Chromium leaves the committed PNG/SVG alone and the notebook showing that PNG.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { chromiumCandidates, chromiumNotice, findChromium, playwrightCacheDir, showFigure, type PlotlyFigure } from '../../lib/report/index.js';
import { installFakeNotebook } from './fake-notebook.js';

/** A 1×1 PNG. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==', 'base64');

const fig: PlotlyFigure = { data: [{ type: 'scatter', x: [0, 1], y: [1, 0] }], layout: { title: { text: 'no chromium' }, width: 320, height: 200 } };

function touchExecutable(path: string): string {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, '#!/bin/sh\n');
  chmodSync(path, 0o755);
  return path;
}

describe('findChromium on other machines', () => {
  it('finds nothing on a bare machine and says where it looked', () => {
    const home = mkdtempSync(join(tmpdir(), 'deepalign-home-'));
    const found = findChromium(undefined, { env: { PATH: '/nowhere/bin', HOME: home }, platform: 'linux', isExecutable: () => false });
    expect(found.path).toBeNull();
    expect(found.reason).toContain('no Chromium found (looked at /usr/bin/chromium, /usr/bin/chromium-browser, /usr/bin/google-chrome');
    expect(found.reason).toContain('chromium, chromium-browser, google-chrome, google-chrome-stable on PATH');
    expect(found.reason).toContain('/snap/bin/chromium, /opt/google/chrome/chrome');
    expect(found.reason).toContain(`playwright's browser cache ${join(home, '.cache', 'ms-playwright')}`);
  });

  it('looks on PATH for chromium, chromium-browser, google-chrome and google-chrome-stable', () => {
    const bin = mkdtempSync(join(tmpdir(), 'deepalign-bin-'));
    const chrome = touchExecutable(join(bin, 'google-chrome-stable'));
    writeFileSync(join(bin, 'chromium'), 'not executable');
    // Only files under our fake bin count, so the real /usr/bin/chromium of this machine does not.
    const isExecutable = (p: string) => p.startsWith(bin) && ((statSync(p, { throwIfNoEntry: false })?.mode ?? 0) & 0o111) !== 0;
    const search = { env: { PATH: `/nowhere:${bin}`, HOME: bin }, platform: 'linux', isExecutable };
    expect(chromiumCandidates(search)).toEqual(expect.arrayContaining([join(bin, 'chromium'), join(bin, 'chromium-browser'), join(bin, 'google-chrome'), chrome]));
    expect(findChromium(undefined, search)).toEqual({ path: chrome, reason: '' });
  });

  it('tries /snap/bin/chromium and /opt/google/chrome/chrome on Linux, and the apps on macOS', () => {
    const linux = chromiumCandidates({ env: { PATH: '' , HOME: '/home/u' }, platform: 'linux', listDir: () => [] });
    expect(linux.indexOf('/snap/bin/chromium')).toBeGreaterThan(linux.indexOf('/usr/bin/chromium'));
    expect(linux).toContain('/opt/google/chrome/chrome');
    const found = findChromium(undefined, { env: { PATH: '', HOME: '/Users/u' }, platform: 'darwin', listDir: () => [], isExecutable: (p) => p === '/Applications/Chromium.app/Contents/MacOS/Chromium' || p === '/Users/u/Applications/Google Chrome.app/Contents/MacOS/Google Chrome' });
    // /Applications before ~/Applications; within each, Google Chrome before Chromium.
    expect(found.path).toBe('/Applications/Chromium.app/Contents/MacOS/Chromium');
    const mac = chromiumCandidates({ env: { PATH: '', HOME: '/Users/u' }, platform: 'darwin', listDir: () => [] });
    expect(mac).toContain('/Applications/Google Chrome.app/Contents/MacOS/Google Chrome');
    expect(mac).not.toContain('/snap/bin/chromium');
  });

  it("finds playwright's newest cached Chromium (PLAYWRIGHT_BROWSERS_PATH, else ~/.cache/ms-playwright or ~/Library/Caches/ms-playwright)", () => {
    const cache = mkdtempSync(join(tmpdir(), 'deepalign-pw-'));
    touchExecutable(join(cache, 'chromium-1100', 'chrome-linux', 'chrome'));
    const newest = touchExecutable(join(cache, 'chromium-1255', 'chrome-linux64', 'chrome'));
    touchExecutable(join(cache, 'chromium_headless_shell-1300', 'chrome-headless-shell-linux64', 'chrome-headless-shell'));
    const onlyCache = (p: string) => p.startsWith(cache) && existsSync(p);
    const env = { PATH: '', HOME: '/home/u', PLAYWRIGHT_BROWSERS_PATH: cache };
    expect(playwrightCacheDir({ env, platform: 'linux' })).toBe(cache);
    expect(findChromium(undefined, { env, platform: 'linux', isExecutable: onlyCache }).path).toBe(newest);
    // Only a headless shell: that one (it renders figures as well).
    const shellOnly = mkdtempSync(join(tmpdir(), 'deepalign-pw-'));
    const shell = touchExecutable(join(shellOnly, 'chromium_headless_shell-1255', 'chrome-linux', 'headless_shell'));
    expect(findChromium(undefined, { env: { ...env, PLAYWRIGHT_BROWSERS_PATH: shellOnly }, platform: 'linux', isExecutable: (p) => p === shell }).path).toBe(shell);

    expect(playwrightCacheDir({ env: { HOME: '/home/u' }, platform: 'linux' })).toBe('/home/u/.cache/ms-playwright');
    expect(playwrightCacheDir({ env: { HOME: '/home/u', XDG_CACHE_HOME: '/xdg' }, platform: 'linux' })).toBe('/xdg/ms-playwright');
    const macCache = '/Users/u/Library/Caches/ms-playwright';
    expect(playwrightCacheDir({ env: { HOME: '/Users/u' }, platform: 'darwin' })).toBe(macCache);
    const mac = findChromium(undefined, {
      env: { PATH: '', HOME: '/Users/u' },
      platform: 'darwin',
      listDir: (dir) => (dir === macCache ? ['chromium-1255', 'ffmpeg-1011'] : []),
      isExecutable: (p) => p.startsWith(macCache) && p.includes('chrome-mac-x64'),
    });
    expect(mac.path).toBe(`${macCache}/chromium-1255/chrome-mac-x64/Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing`);
    const oldMac = chromiumCandidates({ env: { PATH: '', HOME: '/Users/u' }, platform: 'darwin', listDir: (dir) => (dir === macCache ? ['chromium-1000'] : []) });
    expect(oldMac).toContain(`${macCache}/chromium-1000/chrome-mac/Chromium.app/Contents/MacOS/Chromium`);
  });

  it('an explicit path or $DEEPALIGN_CHROMIUM wins, and "none" turns images off', () => {
    expect(findChromium(undefined, { env: { DEEPALIGN_CHROMIUM: 'none' } })).toEqual({ path: null, reason: 'image export disabled (DEEPALIGN_CHROMIUM=none)' });
    expect(findChromium(undefined, { env: { DEEPALIGN_CHROMIUM: process.execPath } }).path).toBe(process.execPath);
    expect(findChromium('/nonexistent/chrome', { env: { DEEPALIGN_CHROMIUM: process.execPath } }).path).toBeNull();
  });
});

describe('a run without Chromium', () => {
  it('says once what is missing and how to install it', () => {
    expect(chromiumNotice({ path: '/usr/bin/chromium', reason: '' })).toBeNull();
    const linux = chromiumNotice({ path: null, reason: 'no Chromium found (looked at /usr/bin/chromium)' }, 'linux')!;
    expect(linux).toContain('figures: no Chromium found (looked at /usr/bin/chromium).');
    expect(linux).toContain('no PNG/SVG');
    expect(linux).toContain('are kept');
    expect(linux).toContain('sudo apt-get install chromium');
    expect(linux).toContain('npx playwright-core install chromium');
    expect(chromiumNotice({ path: null, reason: 'x' }, 'darwin')).toContain('brew install --cask google-chrome');
  });

  it('npm run reproduce says it once, before the first notebook, and not again per notebook', () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-notice-'));
    const notebook = { cells: [{ cell_type: 'code', metadata: {}, source: "console.log('ran');", outputs: [], execution_count: null }], metadata: {}, nbformat: 4, nbformat_minor: 5 };
    const names = ['zz_notice_probe_a', 'zz_notice_probe_b'];
    for (const name of names) writeFileSync(join(dir, `${name}.ipynb`), JSON.stringify(notebook));
    const run = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/reproduce.ts', '--fast', ...names.map((n) => join(dir, `${n}.ipynb`))], {
      encoding: 'utf8',
      env: { ...process.env, DEEPALIGN_CHROMIUM: '/nonexistent/chromium', DEEPALIGN_FIGURES_DIR: join(dir, 'figures') },
      timeout: 90_000,
    });
    // The fast runs write their executed notebooks under tmp/fast/notebooks/: not ours to keep.
    for (const name of names) rmSync(join('tmp', 'fast', 'notebooks', `${name}.ipynb`), { force: true });
    const output = run.stdout + run.stderr;
    expect(run.status, output).toBe(0);
    expect(output.split('figures: no Chromium at /nonexistent/chromium').length - 1).toBe(1);
    expect(output.indexOf('figures: no Chromium')).toBeLessThan(output.indexOf('nb: running'));
    expect(output).toContain('sudo apt-get install chromium');
    // Ends with the (fast) report.
    expect(output).toContain(`report: wrote ${join(dir, 'figures', 'index.html')}`);
  }, 120_000);

  it('leaves the committed PNG and SVG untouched and the notebook shows that PNG', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-nochrome-'));
    mkdirSync(join(dir, 'nb'));
    const png = join(dir, 'nb', 'curve.png');
    const svg = join(dir, 'nb', 'curve.svg');
    writeFileSync(png, PNG);
    writeFileSync(svg, '<svg>committed</svg>');
    const past = new Date('2026-01-01T00:00:00Z');
    utimesSync(png, past, past);
    utimesSync(svg, past, past);
    // No Chromium: what findChromium reports on a machine without one (a path that is not there).
    vi.stubEnv('DEEPALIGN_CHROMIUM', '/nonexistent/chromium');
    const fake = installFakeNotebook();
    try {
      await showFigure(fig, 'nb/curve', { dir });
    } finally {
      fake.uninstall();
      vi.unstubAllEnvs();
    }
    expect(readFileSync(png).equals(PNG)).toBe(true);
    expect(statSync(png).mtimeMs).toBe(past.getTime());
    expect(readFileSync(svg, 'utf8')).toBe('<svg>committed</svg>');
    expect(statSync(svg).mtimeMs).toBe(past.getTime());
    expect(readFileSync(join(dir, 'nb', 'curve.html'), 'utf8')).toContain('no chromium');
    // The notebook output: the committed PNG (not a text placeholder), kept when the notebook is saved.
    const shown = fake.messages.find((m) => m.data['text/plain']?.startsWith('figure nb/curve'))!;
    expect(shown.data['image/png']).toBe(PNG.toString('base64'));
    expect(shown.metadata).toEqual({ deepalign: { omit_mimes_on_save: ['text/html'] } });
    expect(shown.data['text/plain']).toContain('no PNG/SVG: no Chromium at /nonexistent/chromium');
    expect(shown.data['text/plain']).toContain(`kept ${png}, ${svg} of an earlier run (not re-rendered)`);
  });
});
