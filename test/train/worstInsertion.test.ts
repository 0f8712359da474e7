// worstInsertionModel: the slot pool, the trainer's prepareExamples hook, and exact resume (the
// insertions are a function of (seed, step, model state), which a checkpoint restores).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { trainingExample, type Target } from '../../lib/metrics/index.js';
import {
  AUGMENTATION_DEFAULTS, augmentationTripletsFor, collate, disposeBatch, MixedBatchSampler, train, worstInsertionModel, worstInsertionSources, type StepLog,
  type TrainExample, type WorstInsertionStep,
} from '../../lib/train/index.js';
import { crossEntropyObjective, insertionExample } from '../../lib/objectives/index.js';
import { tinyDecoder, TOY_BEHAVIOURS, weightsMoved, wordTarget } from '../objectives/helpers.js';
import { tinyModel } from './tinyModel.js';

const weights = (m: { variables(): Map<string, { dataSync(): ArrayLike<number> }> }) => [...m.variables()].map(([n, v]) => [n, Array.from(v.dataSync())] as const);

describe('worst-insertion training', () => {
  let t: Target;
  let anchor: TrainExample[];
  const settings = { ...AUGMENTATION_DEFAULTS, steps: 4, peakLr: 5e-3, warmupSteps: 1, seed: 3, safetyPerBatch: 3, anchorPerBatch: 1, poolPerTriplet: 4 };
  const wi = { candidates: 3, maxSpan: 4, continuation: 3, plainProbability: 0.25 };
  beforeAll(async () => {
    await initEngine();
    t = wordTarget(tinyDecoder(11));
    anchor = [trainingExample(t, 'name a colour', 'blue is a colour')].map((e) => ({ ids: e.ids, lossMask: e.lossMask }));
  });

  it('the safety pool: poolPerTriplet slots per triplet, each a plain refusal, insertion slots marked with their triplet; seeded', () => {
    const { sources, triplets } = worstInsertionSources(t, TOY_BEHAVIOURS, anchor, settings, wi);
    expect(triplets).toEqual(augmentationTripletsFor(t, TOY_BEHAVIOURS));
    const [safety, a] = sources;
    expect([safety.name, safety.perBatch, a.name, a.perBatch]).toEqual(['safety', 3, 'anchor', 1]);
    expect(safety.examples).toHaveLength(12);
    safety.examples.forEach((e, i) => {
      const tr = triplets[Math.floor(i / 4)];
      expect(e.ids).toEqual([...tr.prompt, ...tr.refusal]);
      if (e.extras) expect(e.extras).toEqual({ worstInsertion: { triplet: Math.floor(i / 4) } });
    });
    const slots = safety.examples.filter((e) => e.extras).length;
    expect(slots).toBeGreaterThan(0);
    expect(slots).toBeLessThan(12);
    expect(worstInsertionSources(t, TOY_BEHAVIOURS, anchor, settings, wi).sources[0].examples).toEqual(safety.examples);
    expect(() => worstInsertionSources(t, TOY_BEHAVIOURS, anchor, settings, { candidates: -1 })).toThrow(/`candidates`/);
  });

  it('trains on the chosen insertions: every insertion row of a step is x + r[:j] + h[:n] + r + eos for the reported choice', async () => {
    const steps: WorstInsertionStep[] = [];
    const { model, result } = await worstInsertionModel(t, TOY_BEHAVIOURS, anchor, { ...settings, steps: 2 }, { ...wi, onInsertions: (s) => steps.push(s) });
    expect(result.steps).toBe(2);
    expect(result.log.every((l) => Number.isFinite(l.loss) && Number.isFinite(l.metrics['loss/safety']))).toBe(true);
    expect(weightsMoved(t.model, model)).toBe(true);
    const triplets = augmentationTripletsFor(t, TOY_BEHAVIOURS);
    // one report per step whose batch holds an insertion slot
    expect(steps.length).toBeGreaterThan(0);
    steps.forEach((s, i) => expect(s.step).toBe(i === 0 ? s.step : steps[i - 1].step + 1));
    expect(steps.every((s) => s.step === 0 || s.step === 1)).toBe(true);
    for (const s of steps) {
      for (const c of s.choices) {
        expect(c.row).toBeLessThan(3);
        expect(c.candidates).toHaveLength(3);
        expect(c.score).toBe(Math.max(...c.candidates.map((x) => x.score)));
        expect(insertionExample(triplets[c.triplet], c).ids.length).toBeGreaterThan(triplets[c.triplet].prompt.length + triplets[c.triplet].refusal.length);
      }
    }
    model.dispose();
    await expect(worstInsertionModel(t, TOY_BEHAVIOURS, anchor, settings, { objective: crossEntropyObjective() } as never)).rejects.toThrow(/do not pass `objective`/);
  });

  it('an interrupted and resumed run equals an uninterrupted one (weights, losses and chosen insertions)', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-worst-'));
    try {
      const straightChoices: WorstInsertionStep[] = [];
      const straight = await worstInsertionModel(t, TOY_BEHAVIOURS, anchor, settings, { ...wi, onInsertions: (s) => straightChoices.push(s) });
      // A crash at step 3 (checkpoints every 2 steps): steps 3 is redone after the resume.
      const crash = (l: StepLog) => {
        if (l.step === 3) throw new Error('simulated crash');
      };
      await expect(worstInsertionModel(t, TOY_BEHAVIOURS, anchor, settings, { ...wi, checkpoint: { dir, every: 2 }, onStep: crash })).rejects.toThrow('simulated crash');
      const resumedChoices: WorstInsertionStep[] = [];
      const resumed = await worstInsertionModel(t, TOY_BEHAVIOURS, anchor, settings, { ...wi, checkpoint: { dir, every: 2 }, onInsertions: (s) => resumedChoices.push(s) });
      expect(resumed.result.resumedFrom).toBe(2);
      expect(resumed.result.log.map((l) => l.loss)).toEqual(straight.result.log.map((l) => l.loss));
      expect(weights(resumed.model)).toEqual(weights(straight.model));
      expect(resumedChoices).toEqual(straightChoices.filter((s) => s.step >= 2));
      expect(straightChoices.length).toBeGreaterThan(0);
      // Other worst-insertion settings are another run: the objective's name records them.
      await expect(worstInsertionModel(t, TOY_BEHAVIOURS, anchor, settings, { ...wi, candidates: 5, checkpoint: { dir, every: 2 } }))
        .rejects.toThrow(/belongs to another run: `objective` was .*candidates=3.*candidates=5/);
      straight.model.dispose();
      resumed.model.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('train: prepareExamples', () => {
  beforeAll(async () => {
    await initEngine();
  });

  it('sees the 0-based step and the model before the update, trains on what it returns, and rejects a wrong count', async () => {
    const { model, params } = tinyModel(9, 4, 0);
    const examples: TrainExample[] = [{ ids: [1, 2, 3], lossMask: [0, 1, 1] }, { ids: [4, 5, 6, 7], lossMask: [0, 0, 1, 1] }];
    const seen: number[] = [];
    const replaced: TrainExample = { ids: [8, 7, 6, 5, 4], lossMask: [0, 1, 1, 1, 1] };
    const run = await train({
      model, params, objective: crossEntropyObjective(), padId: 0, schedule: { peakLr: 0.01, warmupSteps: 0, totalSteps: 3, decay: 'constant' },
      sampler: new MixedBatchSampler([{ name: 'a', examples, perBatch: 2 }], 0),
      prepareExamples: (ex, { step, model: m, sources }) => {
        expect(m).toBe(model);
        expect(sources).toEqual(['a', 'a']);
        seen.push(step);
        expect(ex).toHaveLength(2);
        return [replaced, examples[1]];
      },
    });
    expect(seen).toEqual([0, 1, 2]);
    // tokens of the prepared batch: 5 + the 4-token example
    expect(run.log[0].tokens).toBe(9);
    // the loss is that of the prepared batch
    const { model: m2, params: p2 } = tinyModel(9, 4, 0);
    const batch = collate([replaced, examples[1]], ['a', 'a'], 0);
    const first = crossEntropyObjective().compute(m2, batch).loss.dataSync()[0];
    disposeBatch(batch);
    expect(run.log[0].loss).toBeCloseTo(first, 5);
    expect(p2.size).toBe(3);
    const bad = tinyModel(9, 4, 0);
    await expect(train({
      ...bad, objective: crossEntropyObjective(), padId: 0, schedule: { peakLr: 0.01, warmupSteps: 0, totalSteps: 1, decay: 'constant' },
      sampler: new MixedBatchSampler([{ name: 'a', examples, perBatch: 2 }], 0), prepareExamples: (ex) => ex.slice(1),
    })).rejects.toThrow(/`prepareExamples` returned 1 examples at step 1 for 2 sampled/);
  });
});
