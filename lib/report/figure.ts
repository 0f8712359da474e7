// Plotly figures: an interactive HTML page per figure, PNG and SVG through headless Chromium,
// and inline display in notebooks.
//
// What is written where (and why):
// - figures/<name>.html loads plotly from node_modules by a relative <script src>, so each page is
//   a few KB of figure JSON rather than a 4.8 MB copy of plotly.js (pass `standalone: true` to
//   inline the bundle for a page you want to send elsewhere).
// - figures/<name>.png and .svg are rendered by Plotly.toImage in Chromium; the SVG's random
//   plot uid is replaced by a fixed one (and an empty root style dropped) so re-runs produce
//   identical files. A run that renders images replaces (or, for formats not asked for, removes)
//   those of an earlier run; a run that renders none (no Chromium on the machine) leaves them
//   alone, so a reader without Chromium keeps the committed PNG/SVG, and the notebook keeps
//   showing that PNG (see saveFigure for the details).
// - In a live notebook the first figure injects plotly.js once per kernel session; each figure is
//   then interactive. The committed notebook (written by scripts/nb.ts) keeps only the PNG: the
//   bundle and the interactive HTML carry `metadata.deepalign` flags that the runner drops.
import { accessSync, constants as fsConstants, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { createRequire } from 'node:module';
import { delimiter, dirname, join, relative, resolve, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import { display, escapeHtml, inNotebook } from './notebook.js';
import { displayPath, reportPath } from './paths.js';
import { writeFileAtomic } from '../io/atomic.js';

/** A plotly figure as plain JSON (traces, layout, config), the same shape plotly.js takes. */
export interface PlotlyFigure {
  data: Record<string, unknown>[];
  layout?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

export type FigureFormat = 'html' | 'png' | 'svg';

export interface SaveFigureOptions {
  /** Figures root; defaults to figuresDir() (`./figures` or `$DEEPALIGN_FIGURES_DIR`). */
  dir?: string;
  /** Which files to write; default all three. HTML is always written (the images render from it). */
  formats?: FigureFormat[];
  /** Image size in CSS pixels; defaults to layout.width/height or 800 × 500. */
  width?: number;
  height?: number;
  /** Pixel density of the PNG (1 keeps notebooks small; 2 for print). Default 1. */
  scale?: number;
  /** Inline plotly.js into the HTML (4.8 MB) instead of loading it from node_modules. */
  standalone?: boolean;
  /** Chromium executable, or null to skip PNG/SVG. Default: $DEEPALIGN_CHROMIUM (a path, or
   * "none"), else the first found by findChromium (/usr/bin, PATH, snap, /opt, macOS apps,
   * playwright's browser cache). */
  chromium?: string | null;
}

export interface SavedFigure {
  name: string;
  html: string;
  /** The PNG/SVG this call rendered. */
  png?: string;
  svg?: string;
  /** PNG/SVG of an earlier run left in place because this call rendered no images (no Chromium,
   * one that would not launch, images disabled): they may show an older version of the figure. */
  kept?: { png?: string; svg?: string };
  /** One line for the reader: what was written, or why images are missing. */
  note: string;
}

const DEFAULT_SIZE = { width: 800, height: 500 };
// Flags from the issue: no sandbox (CI runs as root), no GPU, and nothing that phones home.
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--no-first-run',
];
const CHROMIUM_CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'];

/** Absolute path of plotly.min.js, resolved from the working directory (the repo root). */
export function plotlyBundlePath(): string {
  const req = createRequire(join(process.cwd(), 'noop.js'));
  try {
    return req.resolve('plotly.js-dist-min/plotly.min.js');
  } catch {
    throw new Error(`report: cannot find plotly.js-dist-min from ${process.cwd()}; run npm ci at the repository root`);
  }
}

/** Where findChromium looks besides the fixed candidates; tests inject a fake machine. */
export interface ChromiumSearch {
  /** Environment (PATH, HOME, DEEPALIGN_CHROMIUM, PLAYWRIGHT_BROWSERS_PATH, XDG_CACHE_HOME). Default process.env. */
  env?: Record<string, string | undefined>;
  /** Default process.platform. */
  platform?: string;
  /** The home directory. Default os.homedir() (HOME when env is injected). */
  home?: string;
  /** Whether `path` is an executable file. Default: a stat and an X_OK access check. */
  isExecutable?: (path: string) => boolean;
  /** Lists a directory's entries ([] when it does not exist). Default fs.readdirSync. */
  listDir?: (path: string) => string[];
}

const PATH_NAMES = ['chromium', 'chromium-browser', 'google-chrome', 'google-chrome-stable'];
const LINUX_PATHS = ['/snap/bin/chromium', '/opt/google/chrome/chrome'];
const MAC_APPS = ['Google Chrome.app/Contents/MacOS/Google Chrome', 'Chromium.app/Contents/MacOS/Chromium'];
/** Executables inside a playwright browser folder (chromium-<rev>, chromium_headless_shell-<rev>),
 * new layouts (Chrome for Testing) first, then the older chrome-linux / chrome-mac ones. */
const PLAYWRIGHT_EXECUTABLES: Record<string, string[]> = {
  linux: [
    'chrome-linux64/chrome',
    'chrome-linux-arm64/chrome',
    'chrome-linux/chrome',
    'chrome-headless-shell-linux64/chrome-headless-shell',
    'chrome-headless-shell-linux-arm64/chrome-headless-shell',
    'chrome-linux/headless_shell',
  ],
  darwin: [
    'chrome-mac-arm64/Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing',
    'chrome-mac-x64/Google Chrome for Testing.app/Contents/MacOS/Google Chrome for Testing',
    'chrome-mac/Chromium.app/Contents/MacOS/Chromium',
    'chrome-headless-shell-mac-arm64/chrome-headless-shell',
    'chrome-headless-shell-mac-x64/chrome-headless-shell',
    'chrome-mac/headless_shell',
  ],
};

function defaultIsExecutable(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function defaultListDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

/** playwright's browser cache: $PLAYWRIGHT_BROWSERS_PATH, else ~/.cache/ms-playwright (Linux,
 * or $XDG_CACHE_HOME/ms-playwright) and ~/Library/Caches/ms-playwright (macOS). */
export function playwrightCacheDir(search: ChromiumSearch = {}): string | null {
  const env = search.env ?? process.env;
  const platform = search.platform ?? process.platform;
  const home = search.home ?? (search.env ? (env.HOME ?? homedir()) : homedir());
  const fromEnv = env.PLAYWRIGHT_BROWSERS_PATH;
  if (fromEnv && fromEnv !== '0') return resolve(fromEnv);
  if (fromEnv === '0') {
    // Browsers installed inside the package (PLAYWRIGHT_BROWSERS_PATH=0 at install time).
    try {
      return join(dirname(createRequire(join(process.cwd(), 'noop.js')).resolve('playwright-core/package.json')), '.local-browsers');
    } catch {
      return null;
    }
  }
  if (platform === 'darwin') return join(home, 'Library', 'Caches', 'ms-playwright');
  if (platform === 'linux') return join(env.XDG_CACHE_HOME || join(home, '.cache'), 'ms-playwright');
  return null;
}

/** Every path findChromium would try, in order (explicit and $DEEPALIGN_CHROMIUM aside). */
export function chromiumCandidates(search: ChromiumSearch = {}): string[] {
  const env = search.env ?? process.env;
  const platform = search.platform ?? process.platform;
  const home = search.home ?? (search.env ? (env.HOME ?? homedir()) : homedir());
  const listDir = search.listDir ?? defaultListDir;
  const out = [...CHROMIUM_CANDIDATES];
  for (const dir of (env.PATH ?? '').split(delimiter).filter(Boolean)) for (const name of PATH_NAMES) out.push(join(dir, name));
  if (platform === 'linux') out.push(...LINUX_PATHS);
  if (platform === 'darwin') for (const root of ['/Applications', join(home, 'Applications')]) for (const app of MAC_APPS) out.push(join(root, app));
  const cache = playwrightCacheDir(search);
  const inside = PLAYWRIGHT_EXECUTABLES[platform];
  if (cache && inside) {
    // Newest revision first; full Chromium before the headless shell.
    const revisions = (prefix: string) =>
      listDir(cache)
        .map((entry) => ({ entry, rev: new RegExp(`^${prefix}-(\\d+)$`).exec(entry)?.[1] }))
        .filter((e): e is { entry: string; rev: string } => e.rev !== undefined)
        .sort((a, b) => Number(b.rev) - Number(a.rev))
        .map((e) => e.entry);
    for (const folder of [...revisions('chromium'), ...revisions('chromium_headless_shell')]) {
      for (const exe of inside) out.push(join(cache, folder, ...exe.split('/')));
    }
  }
  return [...new Set(out)];
}

/** What findChromium searched, in words, for messages. */
function searchedPlaces(search: ChromiumSearch): string {
  const platform = search.platform ?? process.platform;
  const places = [CHROMIUM_CANDIDATES.join(', '), `${PATH_NAMES.join(', ')} on PATH`];
  if (platform === 'linux') places.push(LINUX_PATHS.join(', '));
  if (platform === 'darwin') places.push('Google Chrome.app and Chromium.app in /Applications and ~/Applications');
  const cache = playwrightCacheDir(search);
  if (cache && PLAYWRIGHT_EXECUTABLES[platform]) places.push(`playwright's browser cache ${cache}`);
  return places.join('; ');
}

/**
 * The Chromium to use, or null (with the reason) when none is available. `explicit` (a path, or
 * null to disable images) wins, then $DEEPALIGN_CHROMIUM (a path, or "none"); else the first
 * executable of /usr/bin/chromium, /usr/bin/chromium-browser, /usr/bin/google-chrome, then
 * chromium, chromium-browser, google-chrome, google-chrome-stable on PATH, /snap/bin/chromium,
 * /opt/google/chrome/chrome, macOS's Google Chrome.app and Chromium.app, and playwright's browser
 * cache (`npx playwright-core install chromium`; $PLAYWRIGHT_BROWSERS_PATH).
 */
export function findChromium(explicit?: string | null, search: ChromiumSearch = {}): { path: string | null; reason: string } {
  if (explicit === null) return { path: null, reason: 'image export disabled (chromium: null)' };
  const env = search.env ?? process.env;
  const isExecutable = search.isExecutable ?? defaultIsExecutable;
  const fromEnv = env.DEEPALIGN_CHROMIUM;
  if (explicit === undefined && fromEnv === 'none') return { path: null, reason: 'image export disabled (DEEPALIGN_CHROMIUM=none)' };
  const given = explicit ?? fromEnv;
  if (given) {
    // A path the user chose is used as given (existsSync: it may be a wrapper script or a link).
    if (existsSync(given)) return { path: given, reason: '' };
    return { path: null, reason: `no Chromium at ${given} (apt-get install chromium, or set DEEPALIGN_CHROMIUM)` };
  }
  const found = chromiumCandidates(search).find((p) => isExecutable(p));
  if (found) return { path: found, reason: '' };
  return { path: null, reason: `no Chromium found (looked at ${searchedPlaces(search)})` };
}

/** How to get a Chromium for the figures' PNG/SVG export, for the platform. */
export function chromiumInstallHint(platform: string = process.platform): string {
  const anywhere = 'or anywhere: npx playwright-core install chromium (into playwright\'s cache, where it is found); or set DEEPALIGN_CHROMIUM=/path/to/chrome';
  if (platform === 'darwin') return `install one: brew install --cask google-chrome (or chromium), ${anywhere}`;
  if (platform === 'linux') return `install one: sudo apt-get install chromium (Debian; Ubuntu: sudo snap install chromium), ${anywhere}`;
  return `install Google Chrome or Chromium, ${anywhere}`;
}

/**
 * One message for the start of a run (npm run reproduce, npm run nb) when figures will get no
 * PNG/SVG: what is missing, what happens to the images already there, how to install Chromium.
 * Null when a Chromium was found.
 */
export function chromiumNotice(found: { path: string | null; reason: string } = findChromium(), platform: string = process.platform): string | null {
  if (found.path) return null;
  return [
    `figures: ${found.reason}.`,
    '  This run writes each figure\'s interactive HTML but no PNG/SVG; PNG/SVG images already beside them',
    '  (the committed figures/) are kept, and notebooks keep showing those images.',
    `  ${chromiumInstallHint(platform)}.`,
  ].join('\n');
}

// Trace types of plotly.js 2, 3 and 4 (v3 dropped heatmapgl and pointcloud, v4 the *mapbox
// traces and added quiver): used only if the installed bundle's own list cannot be read.
const KNOWN_TRACE_TYPES = [
  'bar', 'barpolar', 'box', 'candlestick', 'carpet', 'choropleth', 'choroplethmap', 'choroplethmapbox', 'cone', 'contour',
  'contourcarpet', 'densitymap', 'densitymapbox', 'funnel', 'funnelarea', 'heatmap', 'heatmapgl', 'histogram', 'histogram2d',
  'histogram2dcontour', 'icicle', 'image', 'indicator', 'isosurface', 'mesh3d', 'ohlc', 'parcats', 'parcoords', 'pie',
  'pointcloud', 'quiver', 'sankey', 'scatter', 'scatter3d', 'scattercarpet', 'scattergeo', 'scattergl', 'scattermap',
  'scattermapbox', 'scatterpolar', 'scatterpolargl', 'scattersmith', 'scatterternary', 'splom', 'streamtube', 'sunburst',
  'surface', 'table', 'treemap', 'violin', 'volume', 'waterfall',
];
let traceTypesCache: { bundle: string; types: string[] } | undefined;

/**
 * The trace types the installed plotly.js bundle registers (read from its trace modules, which
 * declare `moduleType:"trace",name:"..."`), sorted. Falls back to the plotly.js 2-4 list if the
 * bundle's format ever hides them.
 */
export function plotlyTraceTypes(): string[] {
  const bundle = plotlyBundlePath();
  if (traceTypesCache?.bundle !== bundle) {
    const source = readFileSync(bundle, 'utf8');
    const found = [...source.matchAll(/moduleType:\s*"trace",\s*name:\s*"([a-z0-9]+)"/g)].map((m) => m[1]!);
    const types = found.includes('scatter') ? [...new Set(found)].sort() : [...KNOWN_TRACE_TYPES];
    traceTypesCache = { bundle, types };
  }
  return [...traceTypesCache.types];
}

/** `figure.layout.xaxis`, `figure.data[0]`, `figure.layout["my key"]`. */
const childPath = (parent: string, key: string | number) =>
  typeof key === 'number' ? `${parent}[${key}]` : /^[A-Za-z_$][\w$]*$/.test(key) ? `${parent}.${key}` : `${parent}[${JSON.stringify(key)}]`;

const isTypedArray = (value: unknown): value is ArrayLike<unknown> => ArrayBuffer.isView(value) && !(value instanceof DataView);

/**
 * Walks the figure as JSON.stringify will and names the first path it cannot serialise: a
 * reference back to an enclosing object (JSON.stringify's bare "Converting circular structure")
 * or a BigInt.
 */
function checkSerialisable(value: unknown, path: string, ancestors: { value: object; path: string }[]): void {
  if (typeof value === 'bigint') throw new Error(`${path} is a BigInt (${value}n), which JSON cannot hold; convert it with Number()`);
  if (value instanceof BigInt64Array || value instanceof BigUint64Array) {
    throw new Error(`${path} is a ${value.constructor.name}, which JSON cannot hold; convert it with Array.from(x, Number)`);
  }
  if (value === null || typeof value !== 'object' || isTypedArray(value)) return;
  const toJSON = (value as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') {
    const replaced = (toJSON as () => unknown).call(value);
    if (replaced !== value) return checkSerialisable(replaced, path, ancestors);
  }
  const loop = ancestors.find((a) => a.value === value);
  if (loop) throw new Error(`${path} refers back to ${loop.path} (a circular structure cannot be saved as JSON)`);
  ancestors.push({ value, path });
  if (Array.isArray(value)) value.forEach((item, i) => checkSerialisable(item, childPath(path, i), ancestors));
  else for (const [key, item] of Object.entries(value)) checkSerialisable(item, childPath(path, key), ancestors);
  ancestors.pop();
}

function validateFigure(fig: PlotlyFigure, where: string): void {
  if (!fig || !Array.isArray(fig.data)) {
    let shown: string | undefined;
    try {
      shown = JSON.stringify(fig)?.slice(0, 80);
    } catch {
      shown = String(fig);
    }
    throw new Error(`${where}: figure.data must be an array of plotly traces, got ${shown}`);
  }
  for (const key of ['layout', 'config'] as const) {
    const part = fig[key];
    if (part !== undefined && (part === null || typeof part !== 'object' || Array.isArray(part))) {
      throw new Error(`${where}: figure.${key} must be an object, got ${part === null ? 'null' : Array.isArray(part) ? 'an array' : typeof part}`);
    }
  }
  const known = plotlyTraceTypes();
  fig.data.forEach((trace, i) => {
    if (trace === null || typeof trace !== 'object' || Array.isArray(trace)) {
      throw new Error(`${where}: figure.data[${i}] must be a trace object, got ${trace === null ? 'null' : Array.isArray(trace) ? 'an array' : typeof trace}`);
    }
    const type = trace.type;
    // plotly draws an unknown type as a scatter (with a console warning nobody sees).
    if (type !== undefined && (typeof type !== 'string' || !known.includes(type))) {
      throw new Error(
        `${where}: figure.data[${i}].type is ${JSON.stringify(type)}, which plotly.js does not know; known trace types: ${known.join(', ')}`,
      );
    }
  });
  try {
    checkSerialisable({ data: fig.data, layout: fig.layout ?? {}, config: fig.config ?? {} }, 'figure', []);
  } catch (error) {
    throw new Error(`${where}: ${(error as Error).message}`);
  }
}

/** JSON safe to place inside a <script> element. Typed arrays (a tensor's dataSync()) become
 * plain arrays: JSON.stringify would write them as {"0": ..., "1": ...}, which plotly ignores. */
const scriptJson = (value: unknown) =>
  JSON.stringify(value, (_key, v: unknown) => (isTypedArray(v) ? Array.from(v) : v)).replace(/</g, '\\u003c');

function figureSize(fig: PlotlyFigure, options: SaveFigureOptions) {
  const layout = fig.layout ?? {};
  return {
    width: options.width ?? (typeof layout.width === 'number' ? layout.width : DEFAULT_SIZE.width),
    height: options.height ?? (typeof layout.height === 'number' ? layout.height : DEFAULT_SIZE.height),
  };
}

/** The standalone HTML page for a figure. */
export function figureHtml(fig: PlotlyFigure, title: string, plotlyScript: { src?: string; inline?: string }): string {
  const loader = plotlyScript.inline !== undefined ? `<script>${plotlyScript.inline}</script>` : `<script src="${escapeHtml(plotlyScript.src!)}"></script>`;
  return `<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>${escapeHtml(title)}</title>
${loader}
<style>html, body { margin: 0; height: 100%; } #figure { width: 100%; height: 100%; }</style>
</head>
<body>
<div id="figure"></div>
<script>
const figure = ${scriptJson({ data: fig.data, layout: fig.layout ?? {}, config: fig.config ?? {} })};
if (window.Plotly) {
  Plotly.newPlot('figure', figure.data, figure.layout, Object.assign({ responsive: true }, figure.config));
} else {
  document.getElementById('figure').textContent =
    ${scriptJson(`plotly.js did not load from ${plotlyScript.src ?? ''}: run npm ci at the repository root, or re-save with { standalone: true }.`)};
}
</script>
</body>
</html>
`;
}

/** The figure JSON inside a page written by figureHtml (null-safe: undefined when the page is
 * not one of ours or its JSON does not parse). */
export function figureFromHtml(html: string): PlotlyFigure | undefined {
  const match = /\nconst figure = (.*);\nif \(window\.Plotly\) \{/s.exec(html);
  if (!match) return undefined;
  try {
    const figure = JSON.parse(match[1]!) as PlotlyFigure;
    return Array.isArray(figure?.data) ? figure : undefined;
  } catch {
    return undefined;
  }
}

// One browser per process, reused across figures and closed after a short idle period so a
// script that saved a figure can still exit on its own. A failed launch or a browser that dies
// clears the cache, so the next figure tries again instead of rethrowing the old error.
let browserPromise: Promise<{ browser: import('playwright-core').Browser; path: string }> | undefined;
let idleTimer: ReturnType<typeof setTimeout> | undefined;
let inFlight = 0;
const IDLE_CLOSE_MS = 1500;

/** Chromium exists at the path but could not be started; saveFigure falls back to HTML only. */
class ChromiumLaunchError extends Error {}

function launchBrowser(executablePath: string): NonNullable<typeof browserPromise> {
  const launching = (async () => {
    const { chromium } = await import('playwright-core');
    let browser: import('playwright-core').Browser;
    try {
      browser = await chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS });
    } catch (error) {
      // Playwright's message goes on with the full command line and call log; the first line
      // says what happened.
      const first = (error instanceof Error ? error.message : String(error)).split('\n')[0];
      throw new ChromiumLaunchError(`Chromium at ${executablePath} failed to launch: ${first}`);
    }
    browser.on('disconnected', () => {
      if (browserPromise === launching) browserPromise = undefined;
    });
    return { browser, path: executablePath };
  })();
  launching.catch(() => {
    if (browserPromise === launching) browserPromise = undefined;
  });
  return launching;
}

async function withBrowser<T>(executablePath: string, fn: (browser: import('playwright-core').Browser) => Promise<T>): Promise<T> {
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = undefined;
  inFlight += 1;
  try {
    if (browserPromise) {
      const current = await browserPromise.catch(() => undefined);
      if (current && current.path !== executablePath) await closeBrowser();
    }
    browserPromise ??= launchBrowser(executablePath);
    return await fn((await browserPromise).browser);
  } finally {
    inFlight -= 1;
    if (inFlight === 0) {
      idleTimer = setTimeout(() => void closeBrowser(), IDLE_CLOSE_MS);
      idleTimer.unref?.();
    }
  }
}

/** Runs `fn` with the shared headless Chromium (launched on first use, closed when idle). */
export function withChromium<T>(executablePath: string, fn: (browser: import('playwright-core').Browser) => Promise<T>): Promise<T> {
  return withBrowser(executablePath, fn);
}

/** Closes the shared export browser now (tests and scripts that want a clean exit). */
export async function closeBrowser(): Promise<void> {
  const pending = browserPromise;
  browserPromise = undefined;
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = undefined;
  if (pending) await (await pending.catch(() => undefined))?.browser.close();
}

/** Renders PNG and/or SVG of the figure page at `htmlPath` with Plotly.toImage. */
async function exportImages(
  executablePath: string,
  htmlPath: string,
  formats: ('png' | 'svg')[],
  size: { width: number; height: number },
  scale: number,
): Promise<{ png?: Buffer; svg?: string }> {
  return withBrowser(executablePath, async (browser) => {
    const page = await browser.newPage({ viewport: size });
    try {
      await page.goto(pathToFileURL(htmlPath).href);
      // Written as strings: lib is also compiled by tslab without DOM typings.
      await page.waitForFunction('window.Plotly !== undefined && document.querySelector("#figure .main-svg") !== null', undefined, {
        timeout: 30_000,
      });
      // Plotly names SVG elements after random uids (one per trace, one per plot); fixed trace
      // uids and a post-hoc rename of the plot uid make the SVG bytes reproducible.
      const images = (await page.evaluate(`(async () => {
        const gd = document.getElementById('figure');
        const figure = { data: gd.data.map((trace, i) => Object.assign({}, trace, { uid: 'trace' + i })), layout: gd.layout, config: gd._context };
        const opts = { width: ${size.width}, height: ${size.height} };
        const out = {};
        for (const format of ${JSON.stringify(formats)}) {
          out[format] = await Plotly.toImage(figure, Object.assign({ format, scale: format === 'png' ? ${scale} : 1 }, opts));
        }
        return out;
      })()`)) as { png?: string; svg?: string };
      const result: { png?: Buffer; svg?: string } = {};
      if (images.png) result.png = Buffer.from(images.png.replace(/^data:image\/png;base64,/, ''), 'base64');
      if (images.svg) {
        const svg = decodeURIComponent(images.svg.replace(/^data:image\/svg\+xml,/, ''));
        const plotUid = /<defs id="defs-([0-9a-f]+)"/.exec(svg)?.[1];
        const renamed = plotUid ? svg.split(plotUid).join('deepalign') : svg;
        // Plotly sets an empty style on the root <svg> either before or after viewBox, depending
        // on timing inside the page (seen in consecutive exports of the same figure); an empty
        // style means nothing, so dropping it keeps the bytes reproducible.
        result.svg = renamed.replace(/^(<svg\b[^>]*?) style=""/, '$1');
      }
      return result;
    } finally {
      await page.close();
    }
  });
}

/**
 * Writes `<dir>/<name>.html` (interactive) and, when Chromium is available, `.png` and `.svg`.
 * Without Chromium, or with one that fails to launch, it writes the HTML and says why in `note`
 * (no error: images are optional). What happens to a `.png`/`.svg` of an earlier run:
 * - this call renders images: any earlier image it did not rewrite (an SVG when only PNG was
 *   asked for) is removed and named in `note`, since it would show an older figure;
 * - this call renders none (no Chromium, a failed launch, `chromium: null`, HTML only): the
 *   earlier images are left alone (the committed figures of a machine without Chromium stay),
 *   returned in `kept` and named in `note`;
 * - the export itself throws (a page that never renders: a bug): they are removed and the error
 *   names them.
 * Files are written atomically. The figure is validated first: trace types against the installed
 * plotly.js, and anything JSON cannot hold (a circular reference, a BigInt) named by its path.
 */
export async function saveFigure(fig: PlotlyFigure, name: string, options: SaveFigureOptions = {}): Promise<SavedFigure> {
  validateFigure(fig, `saveFigure("${name}")`);
  const base = reportPath(name, options.dir, 'saveFigure');
  const formats = options.formats ?? ['html', 'png', 'svg'];
  for (const f of formats) {
    if (f !== 'html' && f !== 'png' && f !== 'svg') throw new Error(`saveFigure("${name}"): unknown format ${JSON.stringify(f)}; expected html, png or svg`);
  }
  mkdirSync(dirname(base), { recursive: true });
  const bundle = plotlyBundlePath();
  const htmlPath = `${base}.html`;
  const src = relative(dirname(htmlPath), bundle).split(sep).join('/');
  const html = figureHtml(fig, name, options.standalone ? { inline: readFileSync(bundle, 'utf8') } : { src });
  writeFileAtomic(htmlPath, html);
  const earlier = (['png', 'svg'] as const).map((f) => `${base}.${f}`).filter((p) => existsSync(p));

  const saved: SavedFigure = { name, html: htmlPath, note: '' };
  const wanted = formats.filter((f): f is 'png' | 'svg' => f !== 'html');
  const chromium = findChromium(options.chromium);
  let missingReason = wanted.length > 0 && !chromium.path ? chromium.reason : '';
  if (wanted.length > 0 && chromium.path) {
    try {
      const images = await exportImages(chromium.path, htmlPath, wanted, figureSize(fig, options), options.scale ?? 1);
      if (images.png) writeFileAtomic((saved.png = `${base}.png`), images.png);
      if (images.svg) writeFileAtomic((saved.svg = `${base}.svg`), images.svg);
    } catch (error) {
      // A Chromium that will not start is an environment problem, like a missing one: keep the
      // notebook running with HTML only. Anything else (a page that never renders) is a bug, and
      // the earlier images, which no longer match the HTML just written, go with the error.
      if (!(error instanceof ChromiumLaunchError)) {
        for (const p of earlier) rmSync(p, { force: true });
        const removed = earlier.length > 0 ? ` (removed the earlier run's ${earlier.map(displayPath).join(', ')}: they showed an older figure)` : '';
        throw new Error(
          `saveFigure("${name}"): wrote ${displayPath(htmlPath)}, but PNG/SVG export with Chromium at ${chromium.path} failed: ` +
            `${error instanceof Error ? error.message : String(error)}${removed}`,
        );
      }
      missingReason = error.message;
    }
  }
  const rendered = saved.png !== undefined || saved.svg !== undefined;
  const others = earlier.filter((p) => p !== saved.png && p !== saved.svg);
  if (rendered) {
    for (const p of others) rmSync(p, { force: true });
  } else if (others.length > 0) {
    saved.kept = {};
    for (const p of others) saved.kept[p.endsWith('.png') ? 'png' : 'svg'] = p;
  }
  const written = [saved.html, saved.png, saved.svg].filter(Boolean).map((p) => displayPath(p!));
  const parts = [`figure ${name}: wrote ${written.join(', ')}`];
  if (rendered && others.length > 0) parts.push(`removed stale ${others.map(displayPath).join(', ')}`);
  if (missingReason) parts.push(`no PNG/SVG: ${missingReason}`);
  if (!rendered && others.length > 0) parts.push(`kept ${others.map(displayPath).join(', ')} of an earlier run (not re-rendered)`);
  saved.note = parts.join('; ');
  return saved;
}

// Survives tslab recompiling this file when it changes during a session.
const PLOTLY_SHOWN = Symbol.for('deepalign.report.plotlyShownInSession');
let figureCounter = 0;

/** Injects plotly.js into the notebook page once per kernel session (never committed). */
function ensurePlotlyInSession(): void {
  const g = globalThis as Record<symbol, unknown>;
  if (g[PLOTLY_SHOWN]) return;
  g[PLOTLY_SHOWN] = true;
  display({
    data: {
      'text/html': `<script>${readFileSync(plotlyBundlePath(), 'utf8')}</script>`,
      'text/plain': 'plotly.js loaded for interactive figures',
    },
    metadata: { deepalign: { omit_on_save: true } },
  });
}

/**
 * Saves the figure (see saveFigure) and shows it: inline and interactive in a notebook (with the
 * PNG as the committed output), or the note on the console elsewhere. Returns nothing, so a cell
 * ending in `await showFigure(...)` prints nothing extra; use saveFigure for the paths.
 */
export async function showFigure(fig: PlotlyFigure, name: string, options: SaveFigureOptions = {}): Promise<void> {
  const saved = await saveFigure(fig, name, options);
  if (!inNotebook()) {
    console.log(saved.note);
    return;
  }
  ensurePlotlyInSession();
  figureCounter += 1;
  const divId = `deepalign-figure-${name.replace(/[^A-Za-z0-9]/g, '-')}-${figureCounter}`;
  const size = figureSize(fig, options);
  // Without new images, the earlier run's PNG (the one the committed notebook shows) stays.
  const pngPath = saved.png ?? saved.kept?.png;
  const png = pngPath ? readFileSync(pngPath).toString('base64') : undefined;
  // If plotly is missing from the page (outputs cleared, notebook reopened), fall back to the PNG.
  const fallback = png
    ? `<img src="data:image/png;base64,${png}" width="${size.width}">`
    : `<pre>${escapeHtml(saved.note)}; open ${escapeHtml(displayPath(saved.html))} for the interactive figure</pre>`;
  const html = `<div id="${divId}" style="width:${size.width}px;height:${size.height}px">${fallback}</div>
<script>(function () {
  var el = document.getElementById(${JSON.stringify(divId)});
  if (!window.Plotly || !el) return;
  var figure = ${scriptJson({ data: fig.data, layout: { width: size.width, height: size.height, ...fig.layout }, config: fig.config ?? {} })};
  el.innerHTML = '';
  Plotly.newPlot(el, figure.data, figure.layout, figure.config);
})();</script>`;
  const data: Record<string, string> = { 'text/html': html, 'text/plain': saved.note };
  if (png) data['image/png'] = png;
  display({
    data,
    // The committed notebook keeps the PNG (GitHub and nbviewer show it); the interactive HTML is
    // for live sessions only. Without a PNG the HTML is all there is, so it stays.
    metadata: png ? { deepalign: { omit_mimes_on_save: ['text/html'] } } : {},
  });
}
