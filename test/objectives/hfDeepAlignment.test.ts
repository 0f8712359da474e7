// Augmentation + PRESTO and augmentation + push-forward on the tiny Hugging Face llama with the real
// Llama-2 tokenizer (the setup of test/metrics/hfTarget.test.ts): one training step each through
// augmentModel, and the rank-match diagnostic on the same target.
import { beforeAll, describe, expect, it } from 'vitest';
import { rankMatchDiagnostic, trainingExample, type Target } from '../../lib/metrics/index.js';
import type { Decoder } from '../../lib/model/index.js';
import { augmentationSources, augmentModel, AUGMENTATION_DEFAULTS, type AugmentOptions, type TrainExample } from '../../lib/train/index.js';
import { HF_BEHAVIOURS, tinyLlamaChat } from '../metrics/hfLlama.js';
import { weightsMoved } from './helpers.js';

describe('PRESTO and push-forward on a Hugging Face llama with the real Llama-2 tokenizer', () => {
  let model: Decoder;
  let target: Target;
  let anchor: TrainExample[];
  // 3 safety examples per step (seed 0 draws at least one with a harmful prefix) + 1 anchor example
  const settings = { ...AUGMENTATION_DEFAULTS, steps: 1, peakLr: 1e-3, warmupSteps: 0, seed: 0, safetyPerBatch: 3, anchorPerBatch: 1, poolPerTriplet: 2 };
  beforeAll(async () => {
    ({ model, target } = await tinyLlamaChat());
    const e = trainingExample(target, 'Name a colour.', 'Blue.');
    anchor = [{ ids: e.ids, lossMask: e.lossMask }];
  });

  it('safety examples carry their harmful prefix as a span right after the Llama-2 prompt', () => {
    const [safety] = augmentationSources(target, HF_BEHAVIOURS, anchor, settings, { prefillSpans: true });
    for (const e of safety.examples) {
      const span = e.extras!.prefill as { start: number; length: number };
      const b = HF_BEHAVIOURS.find((x) => JSON.stringify(e.ids.slice(0, span.start)) === JSON.stringify(target.promptIds(x.request)))!;
      expect(e.ids.slice(span.start, span.start + span.length)).toEqual(target.responseIds(b.harmfulResponse!).slice(0, span.length));
      expect(e.lossMask.indexOf(1)).toBe(span.start + span.length);
    }
  });

  for (const [label, options] of [['PRESTO', { presto: {} }], ['push-forward (listmle)', { pushForward: { form: 'listmle' } }]] as [string, AugmentOptions][]) {
    it(`one augmentation + ${label} step: finite loss and term, the weights move, the original stays`, async () => {
      const before = Array.from(model.variables().get('model.embed_tokens.weight')!.dataSync().slice(0, 64));
      const { model: trained, result } = await augmentModel(target, HF_BEHAVIOURS, anchor, settings, options);
      expect(result.steps).toBe(1);
      const metric = options.presto ? 'presto' : 'push_forward';
      expect(Number.isFinite(result.log[0].loss)).toBe(true);
      // the step's batch has a harmful prefix: PRESTO's attention mass is > 0, the push-forward excess NLL is not 0
      expect(Math.abs(result.log[0].metrics[metric])).toBeGreaterThan(0);
      expect(weightsMoved(model, trained)).toBe(true);
      expect(Array.from(model.variables().get('model.embed_tokens.weight')!.dataSync().slice(0, 64))).toEqual(before);
      trained.dispose();
    });
  }

  it('rankMatchDiagnostic after 3 prefilled tokens: the refusal is the first token of "I cannot ..." etc.', async () => {
    const r = await rankMatchDiagnostic(target, HF_BEHAVIOURS, { prefillTokens: 3 });
    expect(r.perBehaviour.map((x) => x.refusalToken)).toEqual(HF_BEHAVIOURS.map((b) => target.responseIds(b.refusal!)[0]));
    for (const x of r.perBehaviour) {
      expect(x.refusalRank).toBeGreaterThanOrEqual(1);
      expect(x.refusalRank).toBeLessThanOrEqual(32000);
      expect(Math.abs(x.spearman)).toBeLessThanOrEqual(1);
    }
  });
});
