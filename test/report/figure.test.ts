import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { closeBrowser, figureHtml, findChromium, plotlyTraceTypes, saveFigure, showFigure, type PlotlyFigure } from '../../lib/report/index.js';
import { installFakeNotebook } from './fake-notebook.js';

const fig: PlotlyFigure = {
  data: [{ type: 'scatter', x: [0, 1, 2], y: [3, 1, 2], name: 'a </script> trace' }],
  layout: { title: { text: 'test figure' }, width: 640, height: 400 },
};
const chromium = findChromium();

afterAll(() => closeBrowser());

/** Width and height from a PNG's IHDR chunk. */
const pngSize = (png: Buffer) => ({ width: png.readUInt32BE(16), height: png.readUInt32BE(20) });

describe('figures', () => {
  it('writes a small HTML page that loads plotly from node_modules, with the figure JSON script-safe', () => {
    const html = figureHtml(fig, 't', { src: '../node_modules/plotly.js-dist-min/plotly.min.js' });
    expect(html).toContain('<script src="../node_modules/plotly.js-dist-min/plotly.min.js"></script>');
    expect(html).toContain('a \\u003c/script> trace');
    expect(html).not.toContain('a </script> trace');
    expect(html.length).toBeLessThan(2000);
  });

  it('without Chromium writes HTML only and says why', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-fig-'));
    const saved = await saveFigure(fig, 'nb/no-chromium', { dir, chromium: null });
    expect(existsSync(join(dir, 'nb', 'no-chromium.html'))).toBe(true);
    expect(existsSync(join(dir, 'nb', 'no-chromium.png'))).toBe(false);
    expect(saved.png).toBeUndefined();
    expect(saved.note).toMatch(/no PNG\/SVG: image export disabled \(chromium: null\)$/);
    // The relative <script src> points at the real bundle.
    const src = /<script src="([^"]+)">/.exec(readFileSync(saved.html, 'utf8'))![1]!;
    expect(existsSync(join(dir, 'nb', src))).toBe(true);
  });

  it('without images in this call keeps the PNG and SVG of an earlier run, and says so', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-fig-'));
    mkdirSync(join(dir, 'nb'));
    // Stand-ins for a Chromium run's images (the committed figures of a machine without Chromium).
    writeFileSync(join(dir, 'nb', 'a.png'), 'old png');
    writeFileSync(join(dir, 'nb', 'a.svg'), 'old svg');
    const saved = await saveFigure(fig, 'nb/a', { dir, chromium: null });
    expect(existsSync(join(dir, 'nb', 'a.html'))).toBe(true);
    expect(readFileSync(join(dir, 'nb', 'a.png'), 'utf8')).toBe('old png');
    expect(readFileSync(join(dir, 'nb', 'a.svg'), 'utf8')).toBe('old svg');
    expect(saved.png).toBeUndefined();
    expect(saved.kept).toEqual({ png: join(dir, 'nb', 'a.png'), svg: join(dir, 'nb', 'a.svg') });
    expect(saved.note).toBe(
      `figure nb/a: wrote ${join(dir, 'nb', 'a.html')}; no PNG/SVG: image export disabled (chromium: null); kept ${join(dir, 'nb', 'a.png')}, ${join(dir, 'nb', 'a.svg')} of an earlier run (not re-rendered)`,
    );
  });

  it.skipIf(!chromium.path)('a Chromium run then one without Chromium keeps its images; a run that renders PNG only removes the stale SVG', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-fig-'));
    const first = await saveFigure(fig, 'a', { dir });
    expect(existsSync(first.png!) && existsSync(first.svg!)).toBe(true);
    const png = readFileSync(first.png!);
    vi.stubEnv('DEEPALIGN_CHROMIUM', 'none');
    try {
      const second = await saveFigure(fig, 'a', { dir });
      expect(second.note).toContain(`kept ${first.png}, ${first.svg} of an earlier run`);
    } finally {
      vi.unstubAllEnvs();
    }
    expect(readFileSync(first.png!).equals(png)).toBe(true);
    expect(existsSync(first.svg!)).toBe(true);
    // This call renders images: the SVG it did not rewrite no longer matches, so it goes.
    const pngOnly = await saveFigure(fig, 'a', { dir, formats: ['html', 'png'] });
    expect(existsSync(pngOnly.png!)).toBe(true);
    expect(existsSync(first.svg!)).toBe(false);
    expect(pngOnly.note).toContain(`removed stale ${first.svg}`);
  });

  it.skipIf(!existsSync('/bin/true'))('a Chromium that will not launch gives HTML only with the reason, and is not cached', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-fig-'));
    vi.stubEnv('DEEPALIGN_CHROMIUM', '/bin/true');
    try {
      for (const name of ['x', 'y']) {
        const saved = await saveFigure(fig, name, { dir });
        expect(existsSync(saved.html)).toBe(true);
        expect(saved.png).toBeUndefined();
        expect(saved.note).toBe(
          `figure ${name}: wrote ${join(dir, `${name}.html`)}; no PNG/SVG: Chromium at /bin/true failed to launch: browserType.launch: Target page, context or browser has been closed`,
        );
      }
    } finally {
      vi.unstubAllEnvs();
    }
    // The failed launch is forgotten: a working Chromium exports again in the same process.
    if (chromium.path) expect(existsSync((await saveFigure(fig, 'z', { dir })).png!)).toBe(true);
  });

  it('reports a missing Chromium path', () => {
    expect(findChromium('/nonexistent/chromium')).toEqual({
      path: null,
      reason: 'no Chromium at /nonexistent/chromium (apt-get install chromium, or set DEEPALIGN_CHROMIUM)',
    });
  });

  it.skipIf(!chromium.path)('with Chromium writes PNG at the layout size and a deterministic SVG', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-fig-'));
    const first = await saveFigure(fig, 'a', { dir });
    const second = await saveFigure(fig, 'b', { dir });
    const png = readFileSync(first.png!);
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(pngSize(png)).toEqual({ width: 640, height: 400 });
    const svg = readFileSync(first.svg!, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('test figure');
    // Plotly's random plot uid is replaced, so the same figure gives the same bytes.
    expect(svg).toBe(readFileSync(second.svg!, 'utf8'));
    const retina = await saveFigure(fig, 'c', { dir, formats: ['html', 'png'], scale: 2 });
    expect(pngSize(readFileSync(retina.png!))).toEqual({ width: 1280, height: 800 });
    expect(retina.svg).toBeUndefined();
  });

  it('in a notebook injects plotly once per session and keeps only the PNG for the committed notebook', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-fig-'));
    const fake = installFakeNotebook();
    try {
      await showFigure(fig, 'one', { dir });
      await showFigure(fig, 'two', { dir });
    } finally {
      fake.uninstall();
    }
    const [bundle, one, two, ...rest] = fake.messages;
    expect(rest).toHaveLength(0);
    expect(bundle!.metadata).toEqual({ deepalign: { omit_on_save: true } });
    expect(bundle!.data['text/html']!.length).toBeGreaterThan(1_000_000);
    for (const m of [one!, two!]) {
      expect(m.data['text/html']).toContain('Plotly.newPlot');
      expect(m.data['text/html']).not.toContain('plotly.js v');
      if (chromium.path) {
        expect(m.data['image/png']!.length).toBeGreaterThan(1000);
        expect(m.metadata).toEqual({ deepalign: { omit_mimes_on_save: ['text/html'] } });
      }
    }
    expect(one!.data['text/html']).not.toBe(two!.data['text/html']); // distinct element ids
  });

  it('outside a notebook showFigure prints the note', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-fig-'));
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    await showFigure(fig, 'plain', { dir, chromium: null });
    expect(log.mock.calls[0]![0]).toContain('figure plain: wrote');
    log.mockRestore();
  });

  it('names the path of a circular reference instead of JSON.stringify\'s bare error, before writing anything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-fig-'));
    const layout: Record<string, unknown> = { title: { text: 't' }, xaxis: { title: { text: 'x' } } };
    (layout.xaxis as Record<string, unknown>).parent = layout;
    await expect(saveFigure({ data: [{ type: 'scatter', y: [1] }], layout }, 'cyc', { dir, chromium: null })).rejects.toThrow(
      'saveFigure("cyc"): figure.layout.xaxis.parent refers back to figure.layout (a circular structure cannot be saved as JSON)',
    );
    expect(existsSync(join(dir, 'cyc.html'))).toBe(false);
    const trace: Record<string, unknown> = { type: 'bar', y: [1], marker: {} };
    (trace.marker as Record<string, unknown>)['line color'] = [trace];
    const cyclic: PlotlyFigure = { data: [{ type: 'scatter', y: [2] }, trace] };
    await expect(saveFigure(cyclic, 'cyc2', { dir, chromium: null })).rejects.toThrow(
      'saveFigure("cyc2"): figure.data[1].marker["line color"][0] refers back to figure.data[1]',
    );
    // The same object twice (not a cycle) is fine for JSON.
    const shared = { color: 'red' };
    await saveFigure({ data: [{ type: 'scatter', y: [1], marker: shared, line: shared }] }, 'shared', { dir, chromium: null });
    await expect(saveFigure({ data: [{ type: 'scatter', y: [1n] }] } as unknown as PlotlyFigure, 'big', { dir, chromium: null })).rejects.toThrow(
      'saveFigure("big"): figure.data[0].y[0] is a BigInt (1n)',
    );
  });

  it('rejects a trace type plotly.js does not know, naming the trace index and the type', async () => {
    const types = plotlyTraceTypes();
    // Read from the installed bundle (plotly.js 4 here: quiver is new, the mapbox traces are gone).
    expect(types).toEqual(expect.arrayContaining(['bar', 'heatmap', 'histogram', 'scatter', 'scattergl', 'violin']));
    expect(types.length).toBeGreaterThan(30);
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-fig-'));
    await expect(saveFigure({ data: [{ type: 'scatter', y: [1] }, { type: 'scater', y: [2] }] }, 't', { dir, chromium: null })).rejects.toThrow(
      /^saveFigure\("t"\): figure\.data\[1\]\.type is "scater", which plotly\.js does not know; known trace types: bar, barpolar, .*\bscatter\b/,
    );
    await expect(saveFigure({ data: [{ type: 7 }] } as unknown as PlotlyFigure, 't', { dir, chromium: null })).rejects.toThrow('figure.data[0].type is 7');
    await expect(saveFigure({ data: [null] } as unknown as PlotlyFigure, 't', { dir, chromium: null })).rejects.toThrow(
      'saveFigure("t"): figure.data[0] must be a trace object, got null',
    );
    // No type is plotly's default, a scatter.
    await saveFigure({ data: [{ y: [1, 2] }] }, 'untyped', { dir, chromium: null });
    expect(existsSync(join(dir, 't.html'))).toBe(false);
  });

  it('writes typed arrays (a tensor\'s dataSync()) as plain JSON arrays', () => {
    const html = figureHtml({ data: [{ type: 'scatter', y: new Float32Array([0.5, 1.5]) }] }, 't', { src: 'plotly.js' });
    expect(html).toContain('"y":[0.5,1.5]');
  });

  it('rejects bad figures and names', async () => {
    await expect(saveFigure({ data: 'x' } as unknown as PlotlyFigure, 'n')).rejects.toThrow('saveFigure("n"): figure.data must be an array of plotly traces');
    await expect(saveFigure(fig, '/abs')).rejects.toThrow('saveFigure: name "/abs" must be a relative path');
  });
});
