import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { crossEntropyObjective } from '../../lib/objectives/index.js';
import { Rng } from '../../lib/organism/index.js';
import {
  AdamW, clipByGlobalNorm, findCheckpoint, learningRateAt, MixedBatchSampler, train, TrainExample, validateSchedule, type StepLog,
} from '../../lib/train/index.js';
import { tinyModel } from './tinyModel.js';

// The engine the kit trains with (fused cross-entropy and AdamW kernels where available; plain ops otherwise).
beforeAll(async () => {
  await initEngine();
});

const VOCAB = 13;

function corpus(seed: number, n: number): TrainExample[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const len = 3 + rng.int(6);
    // A learnable pattern: each token is the previous + 1 (mod VOCAB), from a random start.
    const start = rng.int(VOCAB);
    const ids = Array.from({ length: len }, (_, t) => (start + t) % VOCAB);
    return { ids, lossMask: ids.map((_, t) => (t >= 2 ? 1 : 0)) };
  });
}

function setup(seed = 0) {
  const { model, params } = tinyModel(VOCAB, 8, seed);
  const sampler = new MixedBatchSampler([
    { name: 'a', examples: corpus(1, 20), perBatch: 3 },
    { name: 'b', examples: corpus(2, 7), perBatch: 2 },
  ], 42);
  return { model, params, sampler };
}

const schedule = { peakLr: 0.05, warmupSteps: 2, totalSteps: 12, decay: 'cosine' as const, minLrRatio: 0.1 };

function snapshot(params: Map<string, tf.Variable>): Record<string, number[]> {
  return Object.fromEntries([...params].map(([n, v]) => [n, Array.from(v.dataSync())]));
}

describe('AdamW and clipping', () => {
  it('matches torch.optim.AdamW formulas (float64 reference), decaying only rank >= 2', () => {
    const rng = new Rng(3);
    const p0 = { w: Array.from({ length: 6 }, () => rng.next() - 0.5), b: Array.from({ length: 3 }, () => rng.next() - 0.5) };
    const params = new Map<string, tf.Variable>([['w', tf.variable(tf.tensor2d(p0.w, [2, 3]))], ['b', tf.variable(tf.tensor1d(p0.b))]]);
    const opt = new AdamW(params, { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
    const ref = { w: p0.w.slice(), b: p0.b.slice() };
    const m = { w: p0.w.map(() => 0), b: p0.b.map(() => 0) };
    const v = { w: p0.w.map(() => 0), b: p0.b.map(() => 0) };
    const lrs = [0.01, 0.02, 0.005];
    lrs.forEach((lr, k) => {
      const g = { w: p0.w.map(() => rng.next() - 0.5), b: p0.b.map(() => rng.next() - 0.5) };
      const gradTensors = { w: tf.tensor2d(g.w, [2, 3]), b: tf.tensor1d(g.b) };
      opt.applyGradients(gradTensors, lr);
      tf.dispose(Object.values(gradTensors));
      const t = k + 1;
      for (const key of ['w', 'b'] as const) {
        const wd = key === 'w' ? 0.1 : 0;
        for (let i = 0; i < ref[key].length; i++) {
          ref[key][i] *= 1 - lr * wd;
          m[key][i] = 0.9 * m[key][i] + 0.1 * g[key][i];
          v[key][i] = 0.95 * v[key][i] + 0.05 * g[key][i] ** 2;
          ref[key][i] -= (lr / (1 - 0.9 ** t)) * m[key][i] / (Math.sqrt(v[key][i]) / Math.sqrt(1 - 0.95 ** t) + 1e-8);
        }
      }
    });
    Array.from(params.get('w')!.dataSync()).forEach((x, i) => expect(x).toBeCloseTo(ref.w[i], 5));
    Array.from(params.get('b')!.dataSync()).forEach((x, i) => expect(x).toBeCloseTo(ref.b[i], 5));
    opt.dispose();
    expect(() => new AdamW(params, { beta2: 1 })).toThrow('`beta2` must be in [0, 1), but is 1');
  });

  it('clipByGlobalNorm scales to maxNorm and leaves small gradients alone', () => {
    const grads = { a: tf.tensor1d([3, 0]), b: tf.tensor1d([0, 4]) };
    const big = clipByGlobalNorm(grads, 1);
    expect(big.norm.dataSync()[0]).toBeCloseTo(5, 5);
    expect(Array.from(big.grads.a.dataSync())[0]).toBeCloseTo(3 / (5 + 1e-6), 5);
    const small = clipByGlobalNorm(grads, 10);
    expect(Array.from(small.grads.b.dataSync())).toEqual([0, 4]);
  });
});

describe('lr schedule', () => {
  it('warms up linearly and decays by cosine to minLrRatio', () => {
    const s = { peakLr: 1, warmupSteps: 4, totalSteps: 14, decay: 'cosine' as const, minLrRatio: 0.1 };
    expect([0, 1, 2, 3].map((k) => learningRateAt(k, s))).toEqual([0.25, 0.5, 0.75, 1]);
    expect(learningRateAt(9, s)).toBeCloseTo(0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * 0.5)), 10);
    expect(learningRateAt(14, s)).toBeCloseTo(0.1, 10);
    expect(() => validateSchedule({ ...s, warmupSteps: 20 })).toThrow('`warmupSteps` must be an integer in [0, totalSteps=14], but is 20');
  });
});

describe('mixed batch sampler', () => {
  it('composes batches per source, walks seeded epochs, and restores its state', () => {
    const { sampler } = setup();
    const first = sampler.next();
    expect(first.sources).toEqual(['a', 'a', 'a', 'b', 'b']);
    for (let i = 0; i < 5; i++) sampler.next();
    const state = sampler.getState();
    expect(state.sources[1].epoch).toBeGreaterThan(0); // 7 examples, 2 per batch: wrapped
    const next = sampler.next();
    const other = setup().sampler;
    other.setState(state);
    expect(other.next()).toEqual(next);
    // Within an epoch each example appears once.
    const fresh = setup().sampler;
    const seen = new Set<TrainExample>();
    for (let i = 0; i < 3; i++) for (const [k, e] of fresh.next().examples.entries()) if (k >= 3) seen.add(e);
    expect(seen.size).toBe(6);
  });
});

describe('train loop', () => {
  it('is deterministic and learns', async () => {
    const runs = [];
    for (let k = 0; k < 2; k++) {
      const { model, params, sampler } = setup();
      runs.push(await train({ model, params, objective: crossEntropyObjective(), sampler, padId: 0, schedule }));
    }
    expect(runs[0].log.map((l) => l.loss)).toEqual(runs[1].log.map((l) => l.loss));
    expect(runs[0].log.at(-1)!.loss).toBeLessThan(runs[0].log[0].loss - 0.2);
    expect(runs[0].log[0].metrics['loss/a']).toBeGreaterThan(0);
    expect(runs[0].log.map((l) => l.lr).slice(0, 2)).toEqual([0.025, 0.05]);
  });

  it('calls eval callbacks on schedule and passes batch extras to the objective', async () => {
    const { model, params, sampler } = setup();
    const seenExtras: unknown[] = [];
    const base = crossEntropyObjective();
    const objective = { name: 'with_extras', compute: (m: typeof model, batch: Parameters<typeof base.compute>[1]) => {
      seenExtras.push(batch.extras.rows);
      return base.compute(m, batch);
    } };
    const evalSteps: number[] = [];
    const run = await train({
      model, params, objective, sampler, padId: 0, schedule: { ...schedule, totalSteps: 7 }, evalEvery: 3,
      onEval: (step) => { evalSteps.push(step); return { score: step * 2 }; },
      batchExtras: (examples) => ({ rows: examples.length }),
    });
    expect(evalSteps).toEqual([3, 6, 7]);
    expect(run.evals).toEqual([{ step: 3, metrics: { score: 6 } }, { step: 6, metrics: { score: 12 } }, { step: 7, metrics: { score: 14 } }]);
    expect(seenExtras).toEqual(new Array(7).fill(5));
  });

  it('resumes after interruption to exactly the uninterrupted result, without leaking tensors', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-train-'));
    try {
      const straight = setup();
      const before = tf.memory().numTensors;
      const full = await train({ ...straight, objective: crossEntropyObjective(), padId: 0, schedule });
      expect(tf.memory().numTensors).toBe(before);

      const first = setup();
      const part = await train({ ...first, objective: crossEntropyObjective(), padId: 0, schedule, checkpoint: { dir, every: 5 }, stopAfter: 7 });
      expect(part.completed).toBe(false);
      expect(part.steps).toBe(7);
      expect(findCheckpoint(dir)).not.toBeNull();
      // Simulate a crash between the checkpoint swap's two renames: only `trainer.old` is complete.
      fs.renameSync(path.join(dir, 'trainer'), path.join(dir, 'trainer.old'));
      // A fresh process would start from fresh (different) weights and sampler: resume must restore both.
      const second = setup(99);
      const rest = await train({ ...second, objective: crossEntropyObjective(), padId: 0, schedule, checkpoint: { dir, every: 5 } });
      expect(rest.resumedFrom).toBe(7);
      expect(rest.completed).toBe(true);
      expect(rest.log.map((l) => l.loss)).toEqual(full.log.map((l) => l.loss));
      expect(snapshot(second.params)).toEqual(snapshot(straight.params));
      // Nothing half-written is left behind.
      expect(fs.readdirSync(dir)).toEqual(['trainer']);
      await expect(train({ ...setup(), objective: { ...crossEntropyObjective(), name: 'other' }, padId: 0, schedule, checkpoint: { dir, every: 5 } }))
        .rejects.toThrow(/belongs to another run: `objective` was "cross_entropy", this run has "other"/);
      // Other settings are another run too: the message names the field.
      await expect(train({ ...setup(), objective: crossEntropyObjective(), padId: 0, schedule: { ...schedule, peakLr: schedule.peakLr * 10 }, checkpoint: { dir, every: 5 } }))
        .rejects.toThrow(/`schedule.peakLr` was/);
      await expect(train({ ...setup(), objective: crossEntropyObjective(), padId: 0, schedule, checkpoint: { dir, every: 5, run: { corpus: 'other' } } }))
        .rejects.toThrow(/`run` was null, this run has \{"corpus":"other"\}/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a crash between checkpoints resumes from the last checkpoint to the uninterrupted result', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-train-'));
    try {
      const straight = setup();
      const full = await train({ ...straight, objective: crossEntropyObjective(), padId: 0, schedule });
      const first = setup();
      const before = tf.memory().numTensors;
      // An exception at step 7 (checkpoints at 5 and 10): steps 6-7 are lost and redone.
      const crash = (l: StepLog) => { if (l.step === 7) throw new Error('simulated crash'); };
      await expect(train({ ...first, objective: crossEntropyObjective(), padId: 0, schedule, checkpoint: { dir, every: 5 }, onStep: crash }))
        .rejects.toThrow('simulated crash');
      expect(tf.memory().numTensors).toBe(before);
      const second = setup(99);
      const rest = await train({ ...second, objective: crossEntropyObjective(), padId: 0, schedule, checkpoint: { dir, every: 5 } });
      expect(rest.resumedFrom).toBe(5);
      expect(rest.log.map((l) => l.loss)).toEqual(full.log.map((l) => l.loss));
      expect(snapshot(second.params)).toEqual(snapshot(straight.params));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
