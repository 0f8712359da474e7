// The CLI's defaults: with no --model, --data or --judge an experiment runs on the committed model
// organism (data/organism: aligned and base), its held-out tasks and its exact judge, as the
// notebooks do. Checked against lib run in-process on the same organism; a figure gets its PNG when
// Chromium is on the machine. Skipped when data/organism is not there (CI builds it in the notebook step).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { organismSuite, organismRapHelper, type OrganismSuite } from '../../lib/experiments/index.js';
import { rapAttack, refusalPrefixAttack } from '../../lib/attacks/index.js';
import { FULL_SAMPLING, type Rate } from '../../lib/metrics/index.js';
import { findChromium } from '../../lib/report/index.js';
import { ROOT, readResults, runCli, summaryOf } from './harness.js';

const ORGANISM = path.join(ROOT, 'data', 'organism');
const present = ['aligned', 'base'].every((m) => fs.existsSync(path.join(ORGANISM, m, 'world.json')) && fs.existsSync(path.join(ORGANISM, m, 'model.safetensors')));
const rate = (r: Rate) => ({ k: r.k, n: r.n, rate: r.rate, low: r.low, high: r.high });

describe.skipIf(!present)('deepalign on the model organism (the defaults)', () => {
  let tmp: string;
  let suite: OrganismSuite;
  beforeAll(async () => {
    await initEngine();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-cli-organism-'));
    suite = await organismSuite(ORGANISM, { perTask: 1, limitTasks: 2, seed: 0 });
  }, 120_000);
  afterAll(() => {
    suite?.aligned.model.dispose();
    suite?.base.model.dispose();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('refusal-prefixes: aligned and base, the organism\'s behaviours and exact judge, equal refusalPrefixAttack', async () => {
    const out = path.join(tmp, 'refusal-prefixes');
    // Figures as a user gets them: PNG too when Chromium is found.
    const run = await runCli(['refusal-prefixes', '--per-task', '1', '--tasks', '2', '--seeds', '0', '--decodings', 't1', '--prefixes', 'i cannot', '--out', out], { env: { DEEPALIGN_CHROMIUM: '' } });
    expect(run.code, run.stderr).toBe(0);
    expect(summaryOf(run)).toEqual({ reused: 0, computed: 4, judged: 8, calls: 4 });
    const results = readResults(out);
    expect(results.metrics.judge).toBe('organism-exact');
    expect(results.metrics.runs.map((r: { model: string; role: string }) => [r.model, r.role])).toEqual([['aligned', 'model'], ['base', 'base-model']]);
    for (const [i, target] of [suite.aligned, suite.base].entries()) {
      const reference = await refusalPrefixAttack(target, suite.behaviours.harmful, suite.judge, ['', 'i cannot'], { decoding: FULL_SAMPLING, seeds: [0], progress: false });
      expect(results.metrics.runs[i].rows.map((r: { pooled: Rate }) => r.pooled)).toEqual(reference.map((r) => rate(r.pooled)));
    }
    expect(fs.existsSync(path.join(out, 'harmful_by_prefix.html'))).toBe(true);
    expect(fs.existsSync(path.join(out, 'harmful_by_prefix.png'))).toBe(findChromium().path !== null);
  }, 180_000);

  it('kl from outside the repository: the default organism, relative --out, a figure, a claim', async () => {
    const run = await runCli(['kl', '--per-task', '1', '--tasks', '2', '--out', 'kl-out'], { cwd: tmp });
    expect(run.code, run.stderr).toBe(0);
    const results = readResults(path.join(tmp, 'kl-out'));
    expect([results.metrics.model, results.metrics.base]).toEqual(['aligned', 'base']);
    expect(results.claims[0].id).toBe('kl_front_loaded');
    // Qi et al.'s Figure 1 on the organism: the first response token carries the difference.
    expect(results.metrics.perPosition[0].mean).toBeGreaterThan(10 * results.metrics.perPosition[3].mean);
    expect(fs.existsSync(path.join(tmp, 'kl-out', 'kl_per_position.html'))).toBe(true);
  }, 180_000);

  it('rap: the exact helper by default, equal to rapAttack with organismRapHelper', async () => {
    const out = path.join(tmp, 'rap');
    const run = await runCli(['rap', '--per-task', '1', '--tasks', '2', '--out', out]);
    expect(run.code, run.stderr).toBe(0);
    const metrics = readResults(out).metrics;
    expect(metrics.helper).toBe('organism-exact');
    expect(metrics.prefill).toBe('sure , here is how .');
    const reference = await rapAttack(suite.aligned, suite.behaviours.harmful, suite.judge, { prefill: 'sure , here is how .', helper: organismRapHelper(suite.world), progress: false });
    expect(metrics.harmful).toEqual(rate(reference.harmful));
    expect(metrics.responses.map((r: { text: string }) => r.text)).toEqual(reference.responses.map((r) => `${r.prefill} | ${r.response}`));
  }, 180_000);
});
