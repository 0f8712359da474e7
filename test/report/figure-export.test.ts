// saveFigure when Chromium launches but the export goes wrong, with playwright-core replaced by a
// fake browser (so this runs without Chromium): the PNG/SVG of an earlier run must not survive
// beside the new HTML.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { closeBrowser, saveFigure, type PlotlyFigure } from '../../lib/report/index.js';

const behaviour = vi.hoisted(() => ({ fail: false }));

vi.mock('playwright-core', () => {
  const page = {
    goto: async () => {},
    waitForFunction: async () => {
      if (behaviour.fail) throw new Error('page.waitForFunction: Timeout 30000ms exceeded.');
    },
    evaluate: async () => ({
      png: `data:image/png;base64,${Buffer.from('fake png').toString('base64')}`,
      svg: `data:image/svg+xml,${encodeURIComponent('<svg><defs id="defs-abc123"></defs></svg>')}`,
    }),
    close: async () => {},
  };
  const browser = { on: () => {}, newPage: async () => page, close: async () => {} };
  return { chromium: { launch: async () => browser } };
});

afterAll(() => closeBrowser());

const fig = (title: string): PlotlyFigure => ({ data: [{ type: 'scatter', x: [0, 1], y: [1, 0] }], layout: { title: { text: title } } });

describe('saveFigure with a Chromium that launches', () => {
  it('an export that throws leaves no PNG/SVG of the earlier run beside the new HTML', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'deepalign-fig-export-'));
    // process.execPath stands in for the Chromium executable: it exists, and the fake launches.
    const chromium = process.execPath;
    behaviour.fail = false;
    const first = await saveFigure(fig('first run'), 'a', { dir, chromium });
    expect(readFileSync(first.png!, 'utf8')).toBe('fake png');
    expect(readFileSync(first.svg!, 'utf8')).toBe('<svg><defs id="defs-deepalign"></defs></svg>');

    behaviour.fail = true;
    const png = join(dir, 'a.png');
    const svg = join(dir, 'a.svg');
    await expect(saveFigure(fig('second run'), 'a', { dir, chromium })).rejects.toThrow(
      `saveFigure("a"): wrote ${join(dir, 'a.html')}, but PNG/SVG export with Chromium at ${chromium} failed: ` +
        `page.waitForFunction: Timeout 30000ms exceeded. (removed the earlier run's ${png}, ${svg}: they showed an older figure)`,
    );
    expect(readFileSync(join(dir, 'a.html'), 'utf8')).toContain('second run');
    expect(existsSync(png)).toBe(false);
    expect(existsSync(svg)).toBe(false);
  });
});
