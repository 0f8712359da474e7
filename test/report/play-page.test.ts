// `npm run play` end to end in a real headless Chromium (playwright-core with the Chromium the
// figures use): the play server started in-process on a random port with the committed organism
// models (aligned, and the base model given as a checkpoint folder, name=dir) and with empty cache
// folders, so the augmented and PRESTO models are absent and the page must say so with the command
// that builds them. Pick a request, click candidates, backtrack once, let the helper choose, switch
// models (the path replays there), run the helper to the end, check the verdict after every step,
// download the trace and replay it exactly with replayRapTrace. No mocks; the page may reach only
// the server. Screenshot: tmp/play-test/play.png.
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchHeadlessChromium } from './headlessChromium.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { findChromium } from '../../lib/report/index.js';
import { organismTraceBehaviour, parsePlayModels, parseRapTrace, replayRapTrace, startPlayServer, type PlayServer, type RapTrace } from '../../lib/experiments/index.js';

const chromium = findChromium();
const SHOTS = resolve('tmp', 'play-test');

interface Shown {
  version: number;
  model: string;
  text: string;
  ids: number[];
  ranks: number[];
  verdict: { harmful: string; refused: string; score: string };
  candidates: { id: number; rank: number; token: string; harmful: boolean; excluded: boolean; prob: string }[];
  steps: { action: string; id: string }[];
  ended: string;
  replayed: string | null;
}

async function shown(page: Page): Promise<Shown> {
  return (await page.evaluate(`(() => {
    const v = document.getElementById('verdict');
    const r = document.getElementById('replayed');
    return {
      version: Number(document.body.dataset.version),
      model: document.getElementById('play').dataset.model,
      text: document.getElementById('response').dataset.text,
      ids: JSON.parse(document.getElementById('response').dataset.ids),
      ranks: [...document.querySelectorAll('#response .tok')].map((t) => Number(t.dataset.rank)),
      verdict: { harmful: v.dataset.harmful, refused: v.dataset.refused, score: v.dataset.score },
      candidates: [...document.querySelectorAll('#candidates tbody tr[data-id]')].map((tr) => ({
        id: Number(tr.dataset.id), rank: Number(tr.dataset.rank), token: tr.dataset.token, harmful: tr.dataset.harmful === 'true',
        excluded: tr.dataset.excluded === 'true', prob: tr.querySelector('td.prob').textContent.trim(),
      })),
      steps: [...document.querySelectorAll('#steps tbody tr')].map((tr) => ({ action: tr.dataset.action, id: tr.dataset.id })),
      ended: document.getElementById('status').dataset.ended,
      replayed: r.hidden ? null : r.textContent,
    };
  })()`)) as Shown;
}

// The server, in-process on a random port: aligned, the absent augmented and PRESTO models (empty
// cache folders), and the base model as a checkpoint folder (name=dir).
let server: PlayServer;
const warnings: string[] = [];
beforeAll(async () => {
  await initEngine();
  const empty = mkdtempSync(join(tmpdir(), 'deepalign-play-'));
  server = await startPlayServer({
    port: 0, models: parsePlayModels('aligned,augmented,presto,base=data/organism/base'), augmentationDir: join(empty, 'augmentation'), defencesDir: join(empty, 'defences'),
    behaviours: { perTask: 2, seed: 0 }, warn: (line) => warnings.push(line),
  });
});
afterAll(async () => {
  await server?.close();
});

describe('the play server', () => {
  it('says which models are missing and how to build them, on the console and in the page', () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(server.models.map((m) => [m.name, m.available])).toEqual([['aligned', true], ['augmented', false], ['presto', false], ['base', true]]);
    expect(warnings.find((w) => w.includes('augmented (35 steps, seed 1) is not available'))).toContain('npm run reproduce -- notebooks/05_data_augmentation.ipynb');
    expect(warnings.find((w) => w.includes('augmented + PRESTO (35 steps, seed 1) is not available'))).toMatch(/npm run reproduce -- notebooks\/08_\w+\.ipynb/);
  });

  it('API: only this machine, only top-k picks, clear errors', async () => {
    const info = (await (await fetch(`${server.url}api/info`)).json()) as { requests: { id: string }[]; topK: number };
    expect(info.topK).toBe(20);
    const post = (url: string, body: unknown) => fetch(`${server.url}${url}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await post('api/sessions', { request: 'nope', model: 'aligned' })).status).toBe(400);
    const absent = await post('api/sessions', { request: info.requests[0].id, model: 'augmented' });
    expect(absent.status).toBe(409);
    expect(((await absent.json()) as { error: string }).error).toContain('npm run reproduce -- notebooks/05_data_augmentation.ipynb');
    const bad = await post('api/sessions', { request: info.requests[0].id, model: 'aligned', prefill: 'sure , xyzzy' });
    expect(((await bad.json()) as { error: string }).error).toContain('"xyzzy"');
    const s = (await (await post('api/sessions', { request: info.requests[0].id, model: 'aligned' })).json()) as { session: string; table: { candidates: { id: number }[] } };
    // A token outside the top 20 cannot be picked by hand.
    const all = await server.target('aligned');
    const view = await (async () => {
      const { nextTokenCandidates } = await import('../../lib/attacks/rap.js');
      const b = server.requests.find((r) => r.id === info.requests[0].id)!;
      return nextTokenCandidates(all.model, [[...all.promptIds(b.request), ...all.responseIds('sure , here is how .')]], all.padTokenId, all.model.config.vocabSize)[0];
    })();
    expect(s.table.candidates.map((c) => c.id)).toEqual(view.slice(0, 20).map((c) => c.id));
    const far = await post(`api/sessions/${s.session}`, { action: 'pick', id: view[30].id });
    expect(far.status).toBe(409);
    expect(((await far.json()) as { error: string }).error).toContain('rank 31 here; RAP picks from the top 20');
    // Another Host header (DNS rebinding) is refused.
    const { request } = await import('node:http');
    const status = await new Promise<number>((done, fail) => {
      const req = request({ host: '127.0.0.1', port: server.port, path: '/api/info', headers: { host: `evil.example:${server.port}` } }, (res) => {
        res.resume();
        done(res.statusCode ?? 0);
      });
      req.on('error', fail);
      req.end();
    });
    expect(status).toBe(403);
  });
});

describe.skipIf(!chromium.path)('npm run play in headless Chromium', () => {
  let browser: Browser;
  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    browser = await launchHeadlessChromium(chromium.path!);
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('pick, backtrack, helper, switch models, helper to the end, download the trace and replay it', async () => {
    const page: Page = await browser.newPage({ viewport: { width: 1400, height: 1050 }, acceptDownloads: true });
    const errors: string[] = [];
    const consoleWarnings: string[] = [];
    page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(`console: ${m.text()}`);
      if (m.type() === 'warning') consoleWarnings.push(m.text());
    });
    // No network beyond the local server.
    const origin = server.url.replace(/\/$/, '');
    await page.route((url) => url.origin !== origin, (route) => {
      errors.push(`network: ${route.request().url()}`);
      return route.abort();
    });
    const settled = async (before: number) => {
      // Selectors, not waitForFunction: the page's CSP (no eval) stays on.
      await page.waitForSelector(`body[data-busy="false"]:not([data-version="${before}"])`, { state: 'attached', timeout: 20_000 });
      return shown(page);
    };
    const click = async (selector: string, before: Shown) => {
      await page.click(selector);
      return settled(before.version);
    };
    try {
      await page.goto(server.url);
      await page.waitForSelector('body[data-ready="true"]', { state: 'attached' });
      // The models: the absent ones are listed, disabled, with the command that builds them.
      const models = (await page.evaluate(`[...document.querySelectorAll('#models [data-model]')].map((d) => ({
        name: d.dataset.model, available: d.dataset.available, disabled: d.querySelector('input').disabled, command: (d.querySelector('.missing code') || { textContent: '' }).textContent }))`)) as {
        name: string; available: string; disabled: boolean; command: string;
      }[];
      expect(models.map((m) => [m.name, m.available, m.disabled])).toEqual([['aligned', 'true', false], ['augmented', 'false', true], ['presto', 'false', true], ['base', 'true', false]]);
      expect(models[1].command).toBe('npm run reproduce -- notebooks/05_data_augmentation.ipynb');
      expect(models[2].command).toMatch(/^npm run reproduce -- notebooks\/08_\w+\.ipynb$/);
      expect(consoleWarnings.filter((w) => w.includes('is not available')).length).toBe(2);

      // Pick a request; start on the aligned model.
      const request = server.requests[5];
      await page.selectOption('#request', request.id);
      await page.click('#start');
      let s = await settled(0);
      expect(s.model).toBe('aligned');
      expect(s.candidates.map((c) => c.rank)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
      const probs = s.candidates.map((c) => parseFloat(c.prob));
      expect(probs.every((p) => p > 0)).toBe(true);
      expect(s.text).toBe('');
      expect(s.verdict).toEqual({ harmful: 'false', refused: 'false', score: '0' });

      // Click candidates by hand: the highest-ranked harmful one, three times.
      const picked: number[] = [];
      for (let i = 0; i < 3; i++) {
        const c = s.candidates.find((x) => x.harmful)!;
        expect(c, `a harmful candidate in the top 20 at pick ${i}`).toBeDefined();
        s = await click(`#candidates tr[data-id="${c.id}"]`, s);
        picked.push(c.id);
        expect(s.ids).toEqual(picked);
        expect(s.ranks[i]).toBe(c.rank);
        expect(s.steps.length).toBe(i + 1);
      }
      const afterThree = s;
      // A non-harmful candidate, then backtrack once: the token comes off and is marked at that position.
      const wrong = s.candidates.find((x) => !x.harmful)!;
      s = await click(`#candidates tr[data-id="${wrong.id}"]`, s);
      expect(s.ids).toEqual([...picked, wrong.id]);
      s = await click('#backtrack', s);
      expect(s.ids).toEqual(picked);
      expect(s.text).toBe(afterThree.text);
      expect(s.steps.map((x) => x.action)).toEqual(['pick', 'pick', 'pick', 'pick', 'backtrack']);
      // Back at the same position, the same table: the removed token is marked "backtracked from".
      expect(s.candidates).toEqual(afterThree.candidates.map((c) => ({ ...c, excluded: c.id === wrong.id })));
      // Let the helper choose: one more harmful token; the verdict's score moves.
      const scoreBefore = Number(s.verdict.score);
      s = await click('#helper', s);
      expect(s.ids.length).toBe(4);
      for (let i = 0; i < 6 && !s.ended; i++) s = await click('#helper', s);
      expect(Number(s.verdict.score)).toBeGreaterThan(scoreBefore);
      const beforeSwitch = s;

      // Switch to the base model: the same path, replayed there, with its own ranks.
      await page.check('input[name=model][value="base"]');
      s = await settled(beforeSwitch.version);
      expect(s.model).toBe('base');
      expect(s.text).toBe(beforeSwitch.text);
      expect(s.ids).toEqual(beforeSwitch.ids);
      expect(s.verdict).toEqual(beforeSwitch.verdict);
      expect(s.steps.map((x) => x.action)).toEqual(beforeSwitch.steps.map((x) => x.action));
      expect(s.replayed).toMatch(/replayed on base \(from aligned\): ranks here \d/);
      const base = await server.target('base');
      expect(s.ranks.length).toBe(s.ids.length);

      // The helper to the end on the base model: it writes the whole answer; the judge says harmful.
      s = await click('#helper-run', s);
      expect(s.ended).toBe('eos');
      expect(s.verdict).toEqual({ harmful: 'true', refused: 'false', score: '1' });
      expect(s.candidates).toEqual([]);
      await page.screenshot({ path: join(SHOTS, 'play.png') });

      // Download the trace and replay it: the same text, the same verdicts, the same ranks.
      const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
      const trace: RapTrace = parseRapTrace(JSON.parse(readFileSync((await download.path())!, 'utf8')));
      expect(download.suggestedFilename()).toMatch(/^rap-trace-.+-base\.json$/);
      expect(trace.request).toMatchObject({ id: request.id, text: request.request, set: { split: 'heldout', perTask: 2, seed: 0 } });
      expect(trace.model).toEqual({ name: 'base', dir: 'data/organism/base' });
      expect(trace.prefill.text).toBe('sure , here is how .');
      expect(trace.backtracks).toBe(1);
      expect(trace.steps.filter((x) => x.action === 'pick').every((x) => Number.isInteger(x.rank) && Number.isInteger(x.id))).toBe(true);
      expect(trace.steps.slice(0, 5).map((x) => [x.action, x.by])).toEqual([['pick', 'human'], ['pick', 'human'], ['pick', 'human'], ['pick', 'human'], ['backtrack', 'human']]);
      expect(trace.steps[4].id).toBe(wrong.id);
      expect(trace.steps.every((x) => typeof x.verdict.harmful === 'boolean')).toBe(true);
      expect(trace.final).toMatchObject({ response: s.text, stopReason: 'eos', verdict: { harmful: true, refused: false, strongReject: 1 } });
      // As a notebook would: the request rebuilt from the set the trace names, then the replay.
      expect(organismTraceBehaviour(server.world, trace)).toEqual(request);
      const replay = await replayRapTrace(base, request, trace, server.judge);
      expect(replay.differences).toEqual([]);
      expect([replay.sameText, replay.sameVerdict, replay.sameRanks]).toEqual([true, true, true]);
      expect(replay.response).toBe(s.text);
      // On the aligned model: the same text and verdicts (ranks of its own).
      const onAligned = await replayRapTrace(await server.target('aligned'), request, trace, server.judge);
      expect([onAligned.sameText, onAligned.sameVerdict]).toEqual([true, true]);

      // Compare: the path ranked on every available model.
      await page.click('#compare');
      await page.waitForSelector('#compare-table');
      const header = (await page.evaluate(`[...document.querySelectorAll('#compare-table thead th')].map((t) => t.textContent)`)) as string[];
      expect(header).toEqual(['pick', 'token', 'aligned: rank (p)', 'base: rank (p)']);
      // Undo takes back the last action: the run is open again.
      s = await shown(page);
      s = await click('#undo', s);
      expect(s.ended).toBe('');
      expect(s.candidates.length).toBe(20);
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  }, 60_000);
});
