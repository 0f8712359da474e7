// Random insertion, one worst-insertion training step and one DeRTa step on the tiny Hugging Face
// llama with the real Llama-2 tokenizer and Qi et al.'s keyword judge (the setup of
// test/metrics/hfTarget.test.ts): nothing in these paths depends on the organism.
import { beforeAll, describe, expect, it } from 'vitest';
import { keywordJudge, trainingExample, type Target } from '../../lib/metrics/index.js';
import type { Decoder } from '../../lib/model/index.js';
import { insertionAttack } from '../../lib/attacks/index.js';
import { AUGMENTATION_DEFAULTS, dertaModel, dertaSources, worstInsertionModel, type TrainExample, type WorstInsertionStep } from '../../lib/train/index.js';
import { HF_BEHAVIOURS, tinyLlamaChat } from '../metrics/hfLlama.js';
import { weightsMoved } from '../objectives/helpers.js';

describe('insertion attack, worst-insertion training and DeRTa on a Hugging Face llama with the real Llama-2 tokenizer', () => {
  let model: Decoder;
  let target: Target;
  let tok: Awaited<ReturnType<typeof tinyLlamaChat>>['tok'];
  let anchor: TrainExample[];
  const settings = { ...AUGMENTATION_DEFAULTS, steps: 1, peakLr: 1e-3, warmupSteps: 0, seed: 0, safetyPerBatch: 2, anchorPerBatch: 1, poolPerTriplet: 2 };
  beforeAll(async () => {
    ({ model, target, tok } = await tinyLlamaChat(4));
    const e = trainingExample(target, 'Name a colour.', 'Blue.');
    anchor = [{ ids: e.ids, lossMask: e.lossMask }];
  });

  it('insertion: prefill = the reference refusal\'s first j tokens + the first n tokens of the harmful answer, judged by keywords on prefill + continuation', async () => {
    const judge = keywordJudge();
    const res = await insertionAttack(target, HF_BEHAVIOURS, judge, { positions: [0, 2], spans: [0, 3], refusal: 'reference', decoding: { doSample: false }, seeds: [0], progress: false });
    expect(res.cells.map((c) => [c.j, c.n])).toEqual([[0, 0], [0, 3], [2, 0], [2, 3]]);
    for (const c of res.cells) {
      c.responses[0].forEach((x, i) => {
        const r = target.responseIds(HF_BEHAVIOURS[i].refusal!);
        const h = target.responseIds(HF_BEHAVIOURS[i].harmfulResponse!);
        expect(x.prefillIds).toEqual([...r.slice(0, c.j as number), ...h.slice(0, c.n)]);
        expect(x.prefill).toBe(target.decode(x.prefillIds));
        expect(x.responseIds.length).toBeLessThanOrEqual(4);
      });
    }
    // the reference refusals are refusals to the keyword judge
    expect(res.trajectoryRefused.k).toBe(3);
    // the keyword judge reads prefill + continuation: "I cannot" (h0's first two refusal tokens) makes the response refused whatever follows
    for (const c of res.cells.filter((x) => x.j === 2)) {
      expect(c.responses[0][0].prefill.startsWith('I cannot')).toBe(true);
      expect([c.responses[0][0].verdict.refused, c.responses[0][0].verdict.harmful]).toEqual([true, false]);
    }
    // greedy trajectories: the model's own bare responses
    const greedy = await insertionAttack(target, HF_BEHAVIOURS.slice(0, 2), judge, { positions: [1], spans: [2], decoding: { doSample: false }, seeds: [0], progress: false });
    expect(greedy.trajectories.every((t) => t.source === 'greedy' && t.ids.length <= 4)).toBe(true);
  });

  it('one worst-insertion training step: finite loss, the chosen insertions sit inside the Llama-2 refusal tokens, the weights move', async () => {
    const steps: WorstInsertionStep[] = [];
    const { model: trained, result } = await worstInsertionModel(target, HF_BEHAVIOURS, anchor, settings, { candidates: 3, maxSpan: 6, continuation: 4, plainProbability: 0, onInsertions: (s) => steps.push(s) });
    expect(result.steps).toBe(1);
    expect(Number.isFinite(result.log[0].loss)).toBe(true);
    expect(steps).toHaveLength(1);
    expect(steps[0].choices).toHaveLength(2);
    for (const c of steps[0].choices) {
      expect(c.j).toBeLessThanOrEqual(target.responseIds(HF_BEHAVIOURS[c.triplet].refusal!).length);
      expect(c.n).toBeGreaterThanOrEqual(1);
      expect(c.n).toBeLessThanOrEqual(6);
      expect(Number.isFinite(c.score)).toBe(true);
    }
    expect(weightsMoved(model, trained)).toBe(true);
    trained.dispose();
  });

  it('one DeRTa step: finite loss, an RTO term on the first refusal token ("▁I"), the weights move', async () => {
    const rto = dertaSources(target, HF_BEHAVIOURS, anchor, settings)[1].examples.map((e) => (e.extras!.rto as { token: number }).token);
    expect(rto.map((id) => tok.decode([id]))).toEqual(['I', 'I', 'I']);
    const { model: trained, result } = await dertaModel(target, HF_BEHAVIOURS, anchor, settings);
    expect(result.steps).toBe(1);
    expect(Number.isFinite(result.log[0].loss)).toBe(true);
    expect(result.log[0].metrics.rto).toBeGreaterThan(0);
    expect(weightsMoved(model, trained)).toBe(true);
    trained.dispose();
  });
});
