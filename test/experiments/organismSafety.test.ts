import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { createModel } from '../../lib/model/index.js';
import { answerSteps, buildWorld, evalPrompts, judgeHarmful, judgeRefused, strongRejectScore } from '../../lib/organism/index.js';
import { GREEDY } from '../../lib/metrics/index.js';
import { evaluateSafety, summarize, wilsonInterval } from '../../lib/experiments/index.js';
import { organismConfig } from '../../lib/train/index.js';

const world = buildWorld();

describe('evaluateSafety', () => {
  beforeAll(async () => {
    await initEngine();
  });

  it('judges what the model generated, and batching (left padding) does not change greedy results', async () => {
    // A random model with a large init: varied, deterministic outputs.
    const model = createModel(organismConfig(world), { seed: 3, initStd: 0.5 });
    const prompts = evalPrompts(world, { harmful: true, split: 'heldout', perTask: 1, seed: 0, limitTasks: 6 });
    const batched = await evaluateSafety(model, world, prompts, { ...GREEDY, maxNewTokens: 12 }, { batchSize: 6 });
    const single = await evaluateSafety(model, world, prompts, { ...GREEDY, maxNewTokens: 12 }, { batchSize: 1 });
    expect(batched.responses.map((r) => r.generated)).toEqual(single.responses.map((r) => r.generated));
    for (const r of batched.responses) {
      expect(r.generated.length).toBeLessThanOrEqual(12);
      expect(r.generated).not.toContain('</s>');
      expect(r.harmful).toBe(judgeHarmful(world, r.taskId, r.generated));
      expect(r.refused).toBe(judgeRefused(world, r.taskId, r.generated));
      expect(r.strongReject).toBe(strongRejectScore(world, r.taskId, r.generated).score);
    }
    // Prefilled words are kept apart from the judged words; rows with different prefix lengths are grouped.
    const prefilled = await evaluateSafety(model, world, prompts, { ...GREEDY, maxNewTokens: 4 }, { prefill: (_, i) => (i % 2 ? ['i', 'cannot'] : ['sure']) });
    prefilled.responses.forEach((r, i) => {
      expect(r.prefill).toEqual(i % 2 ? ['i', 'cannot'] : ['sure']);
      // The prefix is not part of what the model generated ...
      expect(r.generated.length).toBeLessThanOrEqual(4);
      // ... but a forced refusal prefix makes the visible response a refusal.
      if (i % 2) expect(r.refused).toBe(true);
    });
    // Two complete correct steps prefilled: harm counts only steps the model writes itself.
    const harmfulPrefill = await evaluateSafety(model, world, prompts, { ...GREEDY, maxNewTokens: 4 }, { prefill: (p) => answerSteps(p.task, 2) });
    for (const r of harmfulPrefill.responses) {
      expect(r.prefill.length).toBe(14);
      expect(r.harmful).toBe(false);
      expect(r.correctSteps).toBe(0);
    }
    model.dispose();
  });

  it('summarize and Wilson intervals', () => {
    const rows = [true, false, false, false].map((harmful, i) => ({
      taskId: 't', prompt: [], prefill: [], generated: [], harmful, refused: i === 1, strongReject: harmful ? 1 : 0, correctSteps: 0, exact: false,
    }));
    const s = summarize(rows);
    expect([s.n, s.harmfulRate, s.refusalRate, s.meanStrongReject]).toEqual([4, 0.25, 0.25, 0.25]);
    // Hand-computed Wilson score interval for 5/20 at z = 1.96: [0.1119, 0.4687]
    const [lo, hi] = wilsonInterval(0.25, 20);
    expect(lo).toBeCloseTo(0.1119, 3);
    expect(hi).toBeCloseTo(0.4687, 3);
    expect(wilsonInterval(0, 10)[0]).toBe(0);
  });
});
