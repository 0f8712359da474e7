// Training reliability: a non-finite loss, gradient or update stops the run before anything is
// assigned (parameters, optimizer state, sampler and checkpoint stay as before the step), a streak
// of zero gradient norms warns, seeds are checked, and a damaged state.json names itself.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { loadSafetensors } from '../../lib/io/index.js';
import { createModel, loadModel, saveModel } from '../../lib/model/index.js';
import { crossEntropyObjective, type Objective } from '../../lib/objectives/index.js';
import { baseCorpus, buildWorld, encodeChat, Rng } from '../../lib/organism/index.js';
import {
  ALIGN_TRAINING, alignSFT, BASE_TRAINING, cloneModel, findCheckpoint, loadOrganism, MixedBatchSampler, organismConfig, train, trainBase, type TrainExample,
} from '../../lib/train/index.js';
import { tinyModel } from './tinyModel.js';

beforeAll(async () => {
  await initEngine();
});

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-reliability-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const VOCAB = 13;

function corpus(seed: number, n: number): TrainExample[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => {
    const len = 3 + rng.int(6);
    const start = rng.int(VOCAB);
    const ids = Array.from({ length: len }, (_, t) => (start + t) % VOCAB);
    return { ids, lossMask: ids.map((_, t) => (t >= 2 ? 1 : 0)) };
  });
}

function setup(seed = 0) {
  const { model, params } = tinyModel(VOCAB, 8, seed);
  const sampler = new MixedBatchSampler([{ name: 'a', examples: corpus(1, 20), perBatch: 4 }], 42);
  return { model, params, sampler };
}

const schedule = { peakLr: 0.05, warmupSteps: 2, totalSteps: 10, decay: 'cosine' as const, minLrRatio: 0.1 };

function snapshot(params: Map<string, tf.Variable>): Record<string, number[]> {
  return Object.fromEntries([...params].map(([n, v]) => [n, Array.from(v.dataSync())]));
}

/** crossEntropyObjective whose loss (and so every gradient) is `poison` from the `at`-th call on; `before` runs at that call. */
function poisonedAt(at: number, poison: number, before?: () => void): Objective {
  const base = crossEntropyObjective();
  let calls = 0;
  return {
    name: base.name,
    compute(model, batch) {
      calls++;
      const out = base.compute(model, batch);
      if (calls < at) return out;
      before?.();
      return { ...out, loss: tf.mul(out.loss, poison) as tf.Scalar };
    },
  };
}

function readFolder(dir: string): Record<string, string> {
  return Object.fromEntries(fs.readdirSync(dir).sort().map((f) => [f, fs.readFileSync(path.join(dir, f)).toString('base64')]));
}

describe('non-finite values stop training before the update', () => {
  it('a NaN loss at step 4 throws naming step, lr and loss; parameters, sampler and checkpoint are as after step 3', async () => {
    const dir = path.join(tmp, 'nan-loss');
    const { model, params, sampler } = setup();
    let after3: Record<string, number[]> = {};
    let samplerAfter3 = sampler.getState();
    let checkpointAt4: Record<string, string> = {};
    const objective = poisonedAt(4, NaN, () => (checkpointAt4 = readFolder(path.join(dir, 'trainer'))));
    const before = tf.memory().numTensors;
    await expect(train({
      model, params, objective, sampler, padId: 0, schedule, checkpoint: { dir, every: 1 },
      onStep: (l) => { if (l.step === 3) { after3 = snapshot(params); samplerAfter3 = sampler.getState(); } },
    })).rejects.toThrow(/^train: loss is NaN at step 4 \(lr 0\.04\d+\), gradient norm NaN; the update was not applied: parameters, optimizer state, sampler and the last checkpoint are as before step 4/);
    expect(tf.memory().numTensors).toBe(before);
    // Bit-identical: no part of step 4's update reached the caller's parameters.
    expect(snapshot(params)).toEqual(after3);
    expect(sampler.getState()).toEqual(samplerAfter3);
    // The checkpoint (parameters, optimizer moments, state.json) is the one step 3 wrote.
    expect(findCheckpoint(dir)).toBe(path.join(dir, 'trainer'));
    expect(readFolder(path.join(dir, 'trainer'))).toEqual(checkpointAt4);
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'trainer', 'state.json'), 'utf8')).step).toBe(3);
    const saved = loadSafetensors(path.join(dir, 'trainer', 'params.safetensors'));
    for (const [name, values] of Object.entries(after3)) expect(Array.from(saved.get(name)!.data)).toEqual(values);
  });

  it('a NaN gradient with a finite loss names the gradient norm and the parameter', async () => {
    const { model, params, sampler } = setup();
    const base = crossEntropyObjective();
    let calls = 0;
    // d/dw sqrt(0 * sum(w)) = Infinity * 0 = NaN, for norm.weight only; the loss itself is unchanged.
    const objective: Objective = {
      name: 'nan_grad',
      compute(m, batch) {
        const out = base.compute(m, batch);
        if (++calls < 2) return out;
        return { ...out, loss: tf.add(out.loss, tf.sqrt(tf.mul(tf.sum(params.get('norm.weight')!), 0))) as tf.Scalar };
      },
    };
    let after1: Record<string, number[]> = {};
    const before = tf.memory().numTensors;
    await expect(train({ model, params, objective, sampler, padId: 0, schedule, onStep: (l) => { if (l.step === 1) after1 = snapshot(params); } }))
      .rejects.toThrow(/^train: gradient global norm is NaN at step 2 \(lr 0\.05\), loss [\d.]+: non-finite gradient of "norm\.weight" \(8 of 8 values\);/);
    expect(tf.memory().numTensors).toBe(before);
    expect(snapshot(params)).toEqual(after1);
  });

  it('an update that would overflow (lr 1e38) is refused at step 1, the parameters untouched', async () => {
    const { model, params, sampler } = setup();
    const initial = snapshot(params);
    await expect(train({
      model, params, objective: crossEntropyObjective(), sampler, padId: 0,
      schedule: { peakLr: 1e38, warmupSteps: 0, totalSteps: 5, decay: 'constant' },
    })).rejects.toThrow(/^train: the AdamW update at step 1 \(lr 1e\+38\) would make "embed\.weight" \(\d+ of 312 values of the parameter and its two moments\).* non-finite, although loss [\d.]+ and gradient norm [\d.]+ are finite/);
    expect(snapshot(params)).toEqual(initial);
  });

  it('the organism at peak lr 1e3 stops with every weight still finite, after warning about zero gradients; the model still saves', async () => {
    const world = buildWorld();
    const model = createModel(organismConfig(world), { seed: 1 });
    const examples = baseCorpus(world, { count: 40, seed: 1 }).map((e) => encodeChat(world, e, 'all'));
    const sampler = new MixedBatchSampler([{ name: 'base', examples, perBatch: 4 }], 1);
    const warnings: string[] = [];
    const logged: { step: number; gradNorm: number }[] = [];
    let error: Error | undefined;
    try {
      await train({
        model, params: model.variables(), objective: crossEntropyObjective(), sampler, padId: world.wordIds.get('<pad>')!,
        schedule: { peakLr: 1e3, warmupSteps: 1, totalSteps: 30, decay: 'cosine', minLrRatio: 0.1 },
        optimizer: { weightDecay: 0.1, beta1: 0.9, beta2: 0.95 }, clipNorm: 1, zeroGradWarnSteps: 3,
        onWarning: (m) => warnings.push(m), onStep: (l) => logged.push(l),
      });
    } catch (e) {
      error = e as Error;
    }
    expect(error?.message).toMatch(/^train: (loss|gradient global norm|the AdamW update) .*at step \d+ \(lr [\d.e+]+\)/);
    for (const [name, v] of model.variables()) expect(tf.all(tf.isFinite(v)).dataSync()[0], name).toBe(1);
    // The loss sat at ln(vocab) with gradient norm 0 before the overflow: that streak is reported.
    expect(logged.filter((l) => l.gradNorm === 0).length).toBeGreaterThanOrEqual(3);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/gradient norm has been exactly 0 for 3 consecutive steps/);
    const dir = path.join(tmp, 'diverged');
    await saveModel(model, dir);
    (await loadModel(dir)).dispose();
    model.dispose();
  });
});

describe('zero gradient norm', () => {
  const flat: Objective = {
    name: 'flat',
    compute(model, batch) {
      const out = crossEntropyObjective().compute(model, batch);
      return { ...out, loss: tf.mul(out.loss, 0) as tf.Scalar };
    },
  };

  it('warns once per streak after zeroGradWarnSteps steps (default console.warn), and not when disabled', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      const run = await train({ ...setup(), objective: flat, padId: 0, schedule: { ...schedule, totalSteps: 6 }, zeroGradWarnSteps: 3 });
      expect(run.completed).toBe(true);
      expect(run.log.map((l) => l.gradNorm)).toEqual(new Array(6).fill(0));
      expect(run.warnings).toHaveLength(1);
      expect(run.warnings[0]).toMatch(/^train: gradient norm has been exactly 0 for 3 consecutive steps \(steps 1-3, lr now 0\.\d+, loss 0\)/);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(warn.mock.calls[0][0]).toBe(run.warnings[0]);
      // The default is 5 steps.
      const byDefault = await train({ ...setup(), objective: flat, padId: 0, schedule: { ...schedule, totalSteps: 6 } });
      expect(byDefault.warnings[0]).toMatch(/for 5 consecutive steps \(steps 1-5,/);
      const off = await train({ ...setup(), objective: flat, padId: 0, schedule: { ...schedule, totalSteps: 6 }, zeroGradWarnSteps: null });
      expect(off.warnings).toEqual([]);
      // A learning run never warns.
      const learning = await train({ ...setup(), objective: crossEntropyObjective(), padId: 0, schedule, zeroGradWarnSteps: 1 });
      expect(learning.warnings).toEqual([]);
      expect(warn).toHaveBeenCalledTimes(2);
    } finally {
      warn.mockRestore();
    }
    await expect(train({ ...setup(), objective: flat, padId: 0, schedule, zeroGradWarnSteps: 0 })).rejects.toThrow('`zeroGradWarnSteps` must be a positive integer or null, but is 0');
  });
});

describe('seeds and options are checked', () => {
  const world = buildWorld();

  it.each([NaN, 'abc', 0.5])('seed %s is refused, naming the option', async (seed) => {
    const bad = seed as unknown as number;
    const shown = typeof seed === 'string' ? '"abc"' : String(seed);
    expect(() => new MixedBatchSampler([{ name: 'a', examples: corpus(1, 4), perBatch: 1 }], bad))
      .toThrow(`\`MixedBatchSampler: seed\` must be an integer seed, but is ${shown}`);
    expect(() => createModel(organismConfig(world), { seed: bad })).toThrow(`\`createModel: seed\` must be an integer seed, but is ${shown}`);
    await expect(trainBase(world, { ...BASE_TRAINING, seed: bad })).rejects.toThrow(`\`trainBase: settings.seed\` must be an integer seed, but is ${shown}`);
    const tiny = createModel(organismConfig(world), { seed: 0 });
    await expect(alignSFT(world, tiny, { ...ALIGN_TRAINING, seed: bad })).rejects.toThrow(`\`alignSFT: settings.seed\` must be an integer seed, but is ${shown}`);
    expect(() => cloneModel(tiny, bad)).toThrow(/seed` must be an integer seed/);
    tiny.dispose();
  });

  it('train options', async () => {
    await expect(train({ ...setup(), objective: crossEntropyObjective(), padId: 0, schedule, stopAfter: 1.5 })).rejects.toThrow('`stopAfter` must be an integer >= 0, but is 1.5');
    await expect(train({ ...setup(), objective: crossEntropyObjective(), padId: 0, schedule, evalEvery: 0 })).rejects.toThrow('`evalEvery` must be a positive integer, but is 0');
    await expect(train({ ...setup(), objective: crossEntropyObjective(), padId: -1, schedule })).rejects.toThrow('`padId` must be an integer >= 0, but is -1');
    await expect(train({ ...setup(), objective: crossEntropyObjective(), padId: 0, schedule, clipNorm: NaN })).rejects.toThrow('`clipNorm` must be a positive number or null, but is NaN');
  });
});

describe('damaged JSON files name themselves', () => {
  it('a truncated state.json on resume names the file and what it should hold', async () => {
    const dir = path.join(tmp, 'truncated-state');
    await train({ ...setup(), objective: crossEntropyObjective(), padId: 0, schedule, checkpoint: { dir, every: 2 }, stopAfter: 2 });
    const file = path.join(dir, 'trainer', 'state.json');
    const text = fs.readFileSync(file, 'utf8');
    fs.writeFileSync(file, text.slice(0, Math.floor(text.length / 2)));
    await expect(train({ ...setup(), objective: crossEntropyObjective(), padId: 0, schedule, checkpoint: { dir, every: 2 } }))
      .rejects.toThrow(`${file}: not valid JSON (`);
    await expect(train({ ...setup(), objective: crossEntropyObjective(), padId: 0, schedule, checkpoint: { dir, every: 2 } }))
      .rejects.toThrow(/possibly truncated by an interrupted write\); expected the training state written by train\(\)/);
    // Valid JSON with a damaged field.
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(text), step: -1 }));
    await expect(train({ ...setup(), objective: crossEntropyObjective(), padId: 0, schedule, checkpoint: { dir, every: 2 } }))
      .rejects.toThrow(`${file}: \`step\` must be an integer >= 0, but is -1`);
  });

  it('a truncated world.json names the file', async () => {
    const dir = path.join(tmp, 'organism-truncated');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'world.json'), '{"world": {"seed": 1, "na');
    await expect(loadOrganism(dir)).rejects.toThrow(`${path.join(dir, 'world.json')}: not valid JSON (`);
    await expect(loadOrganism(dir)).rejects.toThrow(/expected the organism manifest written by saveOrganism/);
  });
});
