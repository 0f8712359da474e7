import { beforeAll, describe, expect, it } from 'vitest';
import { crossEntropy, initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { createModel, type Decoder } from '../../lib/model/index.js';
import { buildWorld, SPECIAL_TOKENS } from '../../lib/organism/index.js';
import { organismBehaviours, organismTarget } from '../../lib/experiments/index.js';
import { generateResponses, type HarmfulBehaviour, type Target } from '../../lib/metrics/index.js';
import { organismConfig } from '../../lib/train/index.js';
import { Rng } from '../../lib/util/rng.js';
import {
  gcg, gcgCandidateLosses, gcgInputIds, gcgPromptIds, gcgPromptOverride, gcgPrompts, gcgTokenGradients, nonAsciiTokens, type GcgOptions,
} from '../../lib/attacks/index.js';

const world = buildWorld();
const TARGET_TEXT = 'sure , here is';
const SPECIAL_IDS = Object.values(SPECIAL_TOKENS).map((w) => world.wordIds.get(w)!);

/** A small llama on the world's vocabulary with a large init (sharp, token-dependent predictions). */
function tinyOrganism(seed = 3): Decoder {
  const cfg = {
    ...organismConfig(world), hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, num_attention_heads: 2, num_key_value_heads: 1, head_dim: 16,
  };
  return createModel(cfg, { seed, initStd: 0.3 });
}

/** Two behaviours whose prompts differ in length (so the gradient pass left-pads). */
function twoBehaviours(): HarmfulBehaviour[] {
  const { harmful } = organismBehaviours(world, { split: 'heldout', limitTasks: 8 });
  const a = harmful[0];
  const b = harmful.find((h) => h.request.split(' ').length !== a.request.split(' ').length);
  if (!b) throw new Error('test setup: need two requests of different lengths');
  return [a, b];
}

function randomSuffix(rng: Rng, L: number, V: number): number[] {
  const out: number[] = [];
  while (out.length < L) {
    const id = rng.int(V);
    if (!SPECIAL_IDS.includes(id)) out.push(id);
  }
  return out;
}

/** Plain mean CE of the target tokens of one full sequence (one forward on its ids). */
function plainLoss(model: Decoder, ids: number[], m: number): number {
  return tf.tidy(() => {
    const { logits } = model.forward([ids]);
    const T = ids.length;
    const pred = logits.slice([0, T - m - 1, 0], [1, m, logits.shape[2]]);
    const targets = tf.tensor2d([ids.slice(T - m)], [1, m], 'int32');
    return tf.mean(crossEntropy(pred, targets)).dataSync()[0];
  });
}

/** d loss / d inputsEmbeds at the suffix rows, times E^T: the one-hot gradient by the chain rule. */
function onehotGradViaEmbeds(model: Decoder, ids: number[], start: number, L: number, m: number): tf.Tensor2D {
  return tf.tidy(() => {
    const T = ids.length;
    const emb = model.embed([ids]);
    const f = (e: tf.Tensor) => {
      const { logits } = model.forward(null, { inputsEmbeds: e as tf.Tensor3D });
      const pred = logits.slice([0, T - m - 1, 0], [1, m, logits.shape[2]]);
      return tf.mean(crossEntropy(pred, tf.tensor2d([ids.slice(T - m)], [1, m], 'int32'))) as tf.Scalar;
    };
    const gEmb = tf.grad(f)(emb); // [1, T, D]
    const D = model.config.dModel;
    const rows = gEmb.slice([0, start, 0], [1, L, D]).reshape([L, D]);
    return tf.matMul(rows, model.embeddingMatrix(), false, true) as tf.Tensor2D; // [L, V]
  });
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
  return d;
}

const baseOptions = (over: Partial<GcgOptions> = {}): GcgOptions => ({
  targetText: TARGET_TEXT, steps: 6, suffixLength: 5, batchSize: 24, topK: 12, initToken: 'a', disallowedTokens: SPECIAL_IDS, seed: 1, progress: false, ...over,
});

describe('GCG', () => {
  let model: Decoder;
  let target: Target;
  let behaviours: HarmfulBehaviour[];

  beforeAll(async () => {
    await initEngine();
    model = tinyOrganism();
    target = organismTarget(model, world);
    behaviours = twoBehaviours();
  });

  it('inserts the suffix right after the request, inside the chat prompt', () => {
    const b = behaviours[0];
    const suffix = [world.wordIds.get('a')!, world.wordIds.get('make')!];
    const ids = gcgPromptIds(target, b.request, suffix);
    const plain = target.promptIds(b.request);
    const req = target.responseIds(b.request);
    // <s> <user> request... SUFFIX <assistant>
    expect(ids).toEqual([...plain.slice(0, 2 + req.length), ...suffix, ...plain.slice(2 + req.length)]);
    expect(ids.slice(2, 2 + req.length)).toEqual(req);
    expect(ids[ids.length - 1]).toBe(world.wordIds.get('<assistant>'));
    const [p] = gcgPrompts(target, [b], TARGET_TEXT);
    expect(gcgInputIds(p, suffix)).toEqual([...ids, ...target.responseIds(TARGET_TEXT)]);
    // A prompt format that does not contain the request's tokens is an error naming the behaviour.
    const broken: Target = { ...target, promptIds: () => [1, 4, 5] };
    expect(() => gcgPrompts(broken, [b], TARGET_TEXT)).toThrow(new RegExp(`do not appear.*behaviour "${b.id.replace(/[#]/g, '.')}"`));
    expect(() => gcgPromptOverride(broken, suffix)(b)).toThrow(/do not appear/);
  });

  it('scores candidates in a batch exactly as one plain forward per candidate', async () => {
    const prompts = gcgPrompts(target, behaviours, TARGET_TEXT);
    const rng = new Rng(5);
    const V = model.config.vocabSize;
    const candidates = Array.from({ length: 5 }, () => randomSuffix(rng, 6, V));
    const batched = await gcgCandidateLosses(model, prompts, candidates, { batchSize: 3 });
    const m = target.responseIds(TARGET_TEXT).length;
    candidates.forEach((c, i) => {
      const ref = behaviours.reduce((acc, b) => acc + plainLoss(model, [...gcgPromptIds(target, b.request, c), ...target.responseIds(TARGET_TEXT)], m), 0) / behaviours.length;
      expect(Math.abs(batched[i] - ref)).toBeLessThan(1e-4);
    });
    // The candidates do differ (the comparison is not trivially between equal numbers).
    expect(Math.max(...batched) - Math.min(...batched)).toBeGreaterThan(1e-3);
  });

  it('takes the one-hot gradient (left-padded, batched over behaviours) equal to E @ the embedding gradient', async () => {
    const prompts = gcgPrompts(target, behaviours, TARGET_TEXT);
    expect(prompts[0].before.length).not.toBe(prompts[1].before.length);
    const L = 4;
    const suffix = randomSuffix(new Rng(9), L, model.config.vocabSize);
    const m = prompts[0].targetIds.length;
    const refs = prompts.map((p) => onehotGradViaEmbeds(model, gcgInputIds(p, suffix), p.before.length, L, m));
    const refLosses = prompts.map((p) => plainLoss(model, gcgInputIds(p, suffix), m));

    const raw = await gcgTokenGradients(model, prompts, suffix, { normalize: false });
    expect(raw.grad.shape).toEqual([L, model.config.vocabSize]);
    const refSum = tf.add(refs[0], refs[1]);
    const scale = Math.max(...Array.from(refSum.dataSync(), Math.abs));
    expect(scale).toBeGreaterThan(0);
    expect(maxAbsDiff(raw.grad.dataSync(), refSum.dataSync()) / scale).toBeLessThan(1e-4);
    raw.losses.forEach((l, i) => expect(Math.abs(l - refLosses[i])).toBeLessThan(1e-4));

    // One behaviour per pass gives the same sum; llm-attacks' normalisation: each row divided by its norm.
    const chunked = await gcgTokenGradients(model, prompts, suffix, { normalize: false, batchSize: 1 });
    expect(maxAbsDiff(chunked.grad.dataSync(), refSum.dataSync()) / scale).toBeLessThan(1e-4);
    const normed = await gcgTokenGradients(model, prompts, suffix);
    const refNormed = tf.tidy(() => tf.addN(refs.map((g) => tf.div(g, tf.norm(g, 'euclidean', -1, true)))));
    expect(maxAbsDiff(normed.grad.dataSync(), refNormed.dataSync())).toBeLessThan(1e-4);
    const single = await gcgTokenGradients(model, prompts.slice(0, 1), suffix);
    const norms = tf.norm(single.grad, 'euclidean', -1).dataSync();
    norms.forEach((n) => expect(n).toBeCloseTo(1, 4));

    // Finite differences along a random direction of the relaxed one-hot: (L(X + eD) - L(X - eD)) / 2e = <grad, D>.
    const p = prompts[0];
    const ids = gcgInputIds(p, suffix);
    const V = model.config.vocabSize;
    const dir = tf.tidy(() => tf.randomNormal([L, V], 0, 1, 'float32', 7));
    const lossAt = (eps: number) => tf.tidy(() => {
      const x = tf.add(tf.oneHot(tf.tensor1d(suffix, 'int32'), V).toFloat(), tf.mul(dir, eps));
      const sEmb = tf.matMul(x, model.embeddingMatrix());
      const emb = model.embed([ids]).reshape([ids.length, model.config.dModel]);
      const s = p.before.length;
      const full = tf.concat([emb.slice([0, 0], [s, -1]), sEmb, emb.slice([s + L, 0], [-1, -1])], 0).expandDims(0) as tf.Tensor3D;
      const { logits } = model.forward(null, { inputsEmbeds: full });
      const T = ids.length;
      return tf.mean(crossEntropy(logits.slice([0, T - m - 1, 0], [1, m, V]), tf.tensor2d([ids.slice(T - m)], [1, m], 'int32'))).dataSync()[0];
    });
    // Central differences carry an O(eps^2) error (third derivative); Richardson's combination of eps
    // and eps/2 cancels it, so the check does not depend on how curved the random model happens to be.
    const central = (eps: number) => (lossAt(eps) - lossAt(-eps)) / (2 * eps);
    const eps = 5e-4;
    const fd = (4 * central(eps / 2) - central(eps)) / 3;
    const analytic = tf.tidy(() => tf.sum(tf.mul(refs[0], dir)).dataSync()[0]);
    expect(Math.abs(analytic)).toBeGreaterThan(1);
    expect(Math.abs(fd - analytic)).toBeLessThan(0.005 * Math.abs(analytic));

    tf.dispose([...refs, refSum, refNormed, raw.grad, chunked.grad, normed.grad, single.grad, dir]);
  });

  it('lowers the target loss, is seeded, and does not leak tensors', async () => {
    const before = tf.memory().numTensors;
    const steps: number[] = [];
    const run = await gcg(target, behaviours, baseOptions({ steps: 8, onStep: (s) => void steps.push(s.step) }));
    expect(tf.memory().numTensors).toBe(before);
    expect(run.steps).toBe(8);
    expect(run.losses.length).toBe(8);
    expect(steps).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(run.initSuffixIds).toEqual(new Array(5).fill(world.wordIds.get('a')));
    expect(run.suffixIds.length).toBe(5);
    expect(run.suffixIds.some((id) => SPECIAL_IDS.includes(id))).toBe(false);
    expect(run.suffixText).toBe(target.decode(run.suffixIds));
    expect(run.bestLoss).toBeLessThan(run.initialLoss - 0.1);
    expect(run.bestLoss).toBe(Math.min(...run.losses));
    // The reported loss is the suffix's real loss (mean over behaviours of the plain target CE).
    const m = target.responseIds(TARGET_TEXT).length;
    const ref = behaviours.map((b) => plainLoss(model, [...gcgPromptIds(target, b.request, run.suffixIds), ...target.responseIds(TARGET_TEXT)], m));
    expect(Math.abs(run.bestLoss - (ref[0] + ref[1]) / 2)).toBeLessThan(1e-4);
    run.behaviourLosses.forEach((b, i) => expect(Math.abs(b.loss - ref[i])).toBeLessThan(1e-4));

    const again = await gcg(target, behaviours, baseOptions({ steps: 8 }));
    expect(again.suffixIds).toEqual(run.suffixIds);
    expect(again.losses).toEqual(run.losses);
    const other = await gcg(target, behaviours, baseOptions({ steps: 8, seed: 2 }));
    expect(other.losses).not.toEqual(run.losses);

    // Early stop from onStep; the suffix goes straight into generation through the promptIds override.
    const stopped = await gcg(target, behaviours, baseOptions({ steps: 8, onStep: (s) => s.step === 2 }));
    expect(stopped.steps).toBe(2);
    expect(stopped.losses).toEqual(run.losses.slice(0, 2));
    const generated = await generateResponses(target, behaviours, {
      decoding: { doSample: false, maxNewTokens: 3 }, promptIds: gcgPromptOverride(target, run.suffixIds), progress: false,
    });
    expect(generated.length).toBe(2);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('excludes special tokens by default and honours an allowed-token mask', async () => {
    const excluded = nonAsciiTokens(target);
    expect([...excluded].sort((a, b) => a - b)).toEqual([...SPECIAL_IDS].sort((a, b) => a - b));
    const V = model.config.vocabSize;
    const few = ['make', 'a', 'the', 'how', 'to', 'sure', 'here', 'is'].map((w) => world.wordIds.get(w)).filter((x): x is number => x !== undefined);
    const mask = Array.from({ length: V }, (_, i) => few.includes(i));
    const run = await gcg(target, behaviours, baseOptions({ disallowedTokens: undefined, allowedTokens: mask, steps: 3, topK: 256 }));
    expect(run.suffixIds.every((id) => few.includes(id))).toBe(true);
  });

  it('rejects bad options, naming the option', async () => {
    await expect(gcg(target, [], baseOptions())).rejects.toThrow(/behaviours/);
    await expect(gcg(target, behaviours, baseOptions({ suffixLength: 0 }))).rejects.toThrow(/suffixLength/);
    await expect(gcg(target, behaviours, baseOptions({ topK: 0 }))).rejects.toThrow(/topK/);
    await expect(gcg(target, behaviours, baseOptions({ batchSize: 1.5 }))).rejects.toThrow(/batchSize/);
    await expect(gcg(target, behaviours, baseOptions({ steps: -1 }))).rejects.toThrow(/steps/);
    await expect(gcg(target, behaviours, baseOptions({ seed: 0.5 }))).rejects.toThrow(/seed/);
    await expect(gcg(target, behaviours, baseOptions({ targetText: '' }))).rejects.toThrow(/targetText/);
    await expect(gcg(target, behaviours, { ...baseOptions(), targetText: undefined as unknown as string })).rejects.toThrow(/targetText/);
    // The organism has no '!' (llm-attacks' default init token).
    await expect(gcg(target, behaviours, baseOptions({ initToken: undefined }))).rejects.toThrow(/initToken/);
    await expect(gcg(target, behaviours, baseOptions({ initToken: SPECIAL_IDS[0] }))).rejects.toThrow(/initToken.*disallowed/);
    await expect(gcg(target, behaviours, baseOptions({ initSuffix: [1, 2], suffixLength: 3 }))).rejects.toThrow(/suffixLength.*initSuffix/);
    await expect(gcg(target, behaviours, baseOptions({ initSuffix: [99999] }))).rejects.toThrow(/initSuffix/);
    await expect(gcg(target, behaviours, baseOptions({ allowedTokens: [true] }))).rejects.toThrow(/allowedTokens/);
    await expect(gcg(target, behaviours, baseOptions({ disallowedTokens: [-1] }))).rejects.toThrow(/disallowedTokens/);
  });
});
