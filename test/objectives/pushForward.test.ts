import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { mulberry32 } from '../../lib/model/random.js';
import {
  augmentationExample, augmentationObjective, collatePrefillSpans, maskedCrossEntropy, plackettLuceNLL, pushForwardLoss, pushForwardObjective,
  pushForwardTerm, resolvePushForwardOptions, type PrefillSpan, type PushForwardOptions,
} from '../../lib/objectives/index.js';
import { trainingExample } from '../../lib/metrics/index.js';
import { augmentationSources, augmentModel, AUGMENTATION_DEFAULTS, collate, disposeBatch, type TrainExample } from '../../lib/train/index.js';
import { tinyDecoder, TOY_BEHAVIOURS, weightsMoved, wordTarget } from './helpers.js';

const value = (x: tf.Tensor) => x.dataSync()[0];

function randomLogits(n: number, V: number, seed: number, spread = 4): number[][] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, () => Array.from({ length: V }, () => spread * (rand() - 0.5)));
}

function logSoftmax(z: readonly number[]): number[] {
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((a, x) => a + Math.exp(x - m), 0));
  return z.map((x) => x - lse);
}

/** Plackett-Luce top-K NLL of `order` under z, by the definition (remaining set shrinking step by step). */
function referencePL(z: readonly number[], order: readonly number[]): number {
  const used = new Set<number>();
  let nll = 0;
  for (const id of order) {
    const rest = z.filter((_, v) => !used.has(v));
    const m = Math.max(...rest);
    nll += m + Math.log(rest.reduce((a, x) => a + Math.exp(x - m), 0)) - z[id];
    used.add(id);
  }
  return nll;
}

const topOrder = (z: readonly number[], k: number) => z.map((x, i) => [x, i]).sort((a, b) => b[0] - a[0]).slice(0, k).map(([, i]) => i);

describe('pushForwardLoss', () => {
  beforeAll(async () => {
    await initEngine();
  });

  const post = randomLogits(3, 12, 1);
  const bare = randomLogits(3, 12, 2);

  it("'kl' is KL(softmax(bare) || softmax(post)) averaged over rows; 'listmle' is the excess Plackett-Luce NLL of the bare top-K order", () => {
    const kl = post.map((z, i) => {
      const lb = logSoftmax(bare[i]);
      const lp = logSoftmax(z);
      return lb.reduce((a, x, v) => a + Math.exp(x) * (x - lp[v]), 0);
    });
    expect(value(pushForwardLoss(tf.tensor2d(post), tf.tensor2d(bare)))).toBeCloseTo(kl.reduce((a, x) => a + x, 0) / 3, 5);
    for (const topK of [1, 5, 12, 50]) {
      const excess = post.map((z, i) => {
        const order = topOrder(bare[i], Math.min(topK, 12));
        return referencePL(z, order) - referencePL(bare[i], order);
      });
      expect(value(pushForwardLoss(tf.tensor2d(post), tf.tensor2d(bare), { form: 'listmle', topK }))).toBeCloseTo(excess.reduce((a, x) => a + x, 0) / 3, 4);
    }
    // K = 1: the cross-entropy on the bare argmax, minus the bare distribution's own
    const one = post.map((z, i) => {
      const top = topOrder(bare[i], 1)[0];
      return -logSoftmax(z)[top] + logSoftmax(bare[i])[top];
    });
    expect(value(pushForwardLoss(tf.tensor2d(post), tf.tensor2d(bare), { form: 'listmle', topK: 1 }))).toBeCloseTo(one.reduce((a, x) => a + x, 0) / 3, 5);
    // plackettLuceNLL stays finite when the top tokens hold almost all the mass
    const peaked = tf.tensor2d([[60, 40, 0, -20]]);
    expect(plackettLuceNLL(peaked, [[0, 1, 2]]).dataSync()[0]).toBeCloseTo(referencePL([60, 40, 0, -20], [0, 1, 2]), 4);
  });

  it('is 0 when the two distributions match (equal logits, or logits shifted by a constant), for both forms', () => {
    for (const form of ['kl', 'listmle'] as const) {
      expect(value(pushForwardLoss(tf.tensor2d(bare), tf.tensor2d(bare), { form }))).toBe(0);
      expect(Math.abs(value(pushForwardLoss(tf.tensor2d(bare.map((r) => r.map((x) => x + 3))), tf.tensor2d(bare), { form })))).toBeLessThan(1e-5);
    }
  });

  it('passes no gradient to the bare distribution (stop-gradient); KL pulls the post-prefill softmax toward the bare one', () => {
    for (const form of ['kl', 'listmle'] as const) {
      const [gPost, gBare] = tf.grads((p: tf.Tensor, b: tf.Tensor) => pushForwardLoss(p as tf.Tensor2D, b as tf.Tensor2D, { form, topK: 4 }))([tf.tensor2d(post), tf.tensor2d(bare)]);
      expect(Math.max(...Array.from(gBare.dataSync()).map(Math.abs))).toBe(0);
      expect(tf.norm(gPost).dataSync()[0]).toBeGreaterThan(1e-3);
      if (form === 'kl') {
        // d/d post of mean_i KL = (softmax(post_i) - softmax(bare_i)) / n
        const expected = post.flatMap((z, i) => logSoftmax(z).map((lp, v) => (Math.exp(lp) - Math.exp(logSoftmax(bare[i])[v])) / 3));
        Array.from(gPost.dataSync()).forEach((g, j) => expect(g).toBeCloseTo(expected[j], 5));
      }
    }
  });

  it("'listmle' depends on the bare ranking only: sharpening the bare logits (same order) leaves its gradient unchanged, KL's changes", () => {
    const grad = (b: number[][], o: PushForwardOptions) => tf.grad((p: tf.Tensor) => pushForwardLoss(p as tf.Tensor2D, tf.tensor2d(b), o))(tf.tensor2d(post)).dataSync();
    const sharper = bare.map((r) => r.map((x) => 3 * x));
    const a = grad(bare, { form: 'listmle', topK: 5 });
    const b = grad(sharper, { form: 'listmle', topK: 5 });
    Array.from(a).forEach((x, j) => expect(b[j]).toBeCloseTo(x, 6));
    const ka = grad(bare, { form: 'kl' });
    const kb = grad(sharper, { form: 'kl' });
    expect(Math.max(...Array.from(ka).map((x, j) => Math.abs(x - kb[j])))).toBeGreaterThan(1e-3);
  });

  it('checks its options', () => {
    expect(resolvePushForwardOptions()).toEqual({ weight: 1, form: 'kl', topK: 20, normalise: 'examples' });
    expect(() => resolvePushForwardOptions({ normalise: 'batch' as never })).toThrow(/`normalise`/);
    expect(() => resolvePushForwardOptions({ form: 'rank' as never })).toThrow(/`form`/);
    expect(() => resolvePushForwardOptions({ topK: 0 })).toThrow(/`topK`/);
    expect(() => resolvePushForwardOptions({ weight: Number.NaN })).toThrow(/`weight`/);
    expect(() => resolvePushForwardOptions({ k: 3 } as never)).toThrow(/unknown option `k`/);
    expect(() => pushForwardLoss(tf.tensor2d([[1, 2]]), tf.tensor2d([[1, 2, 3]]))).toThrow(/must both be \[n, V\]/);
  });
});

describe('pushForwardTerm on a batch', () => {
  let t: ReturnType<typeof wordTarget>;
  beforeAll(async () => {
    await initEngine();
    t = wordTarget(tinyDecoder(5));
  });

  it('compares position s + k - 1 with position s - 1 of the rows with k > 0 and skips plain refusals and rows without a span', () => {
    const [B, T, V] = [4, 6, 9];
    const logits = tf.tensor3d(randomLogits(B * T, V, 3).flat(), [B, T, V]);
    const spans: (PrefillSpan | null)[] = [{ start: 2, length: 3 }, null, { start: 3, length: 0 }, { start: 1, length: 1 }];
    const rows = logits.arraySync();
    const expected = pushForwardLoss(tf.tensor2d([rows[0][4], rows[3][1]]), tf.tensor2d([rows[0][1], rows[3][0]]), { form: 'listmle', topK: 3 });
    expect(value(pushForwardTerm(logits, spans, { form: 'listmle', topK: 3 }))).toBeCloseTo(value(expected), 6);
    expect(value(pushForwardTerm(logits, [null, null, spans[2], null]))).toBe(0);
    // only the post-prefill rows receive a gradient
    const g = tf.grad((l: tf.Tensor) => pushForwardTerm(l as tf.Tensor3D, spans))(logits).arraySync() as number[][][];
    const moved = g.map((row) => row.map((v) => v.some((x) => x !== 0)));
    expect(moved).toEqual([
      [false, false, false, false, true, false],
      [false, false, false, false, false, false],
      [false, false, false, false, false, false],
      [false, true, false, false, false, false],
    ]);
  });

  it('the bare distribution read at s - 1 inside x + h[:k] + r is the model\'s first-response distribution for x alone', () => {
    const b = TOY_BEHAVIOURS[0];
    const prompt = t.promptIds(b.request);
    const e = augmentationExample(prompt, t.responseIds(b.harmfulResponse!), [...t.responseIds(b.refusal!), 2], 3);
    const [inRow, alone] = tf.tidy(() => [
      Array.from(tf.slice(t.model.forward([e.ids]).logits, [0, prompt.length - 1, 0], [1, 1, -1]).dataSync()),
      Array.from(tf.slice(t.model.forward([prompt]).logits, [0, prompt.length - 1, 0], [1, 1, -1]).dataSync()),
    ]);
    inRow.forEach((x, v) => expect(x).toBeCloseTo(alone[v], 4));
  });
});

describe('augmentation + push-forward objective', () => {
  let t: ReturnType<typeof wordTarget>;
  let anchor: TrainExample[];
  const settings = { ...AUGMENTATION_DEFAULTS, steps: 2, peakLr: 1e-3, warmupSteps: 0, seed: 2, safetyPerBatch: 3, anchorPerBatch: 1, poolPerTriplet: 4 };
  beforeAll(async () => {
    await initEngine();
    t = wordTarget(tinyDecoder(6));
    anchor = [trainingExample(t, 'name a colour', 'blue is a colour')].map((e) => ({ ids: e.ids, lossMask: e.lossMask }));
  });

  it('loss = token-mean CE + weight * pushForwardTerm', () => {
    const [safety] = augmentationSources(t, TOY_BEHAVIOURS, anchor, settings, { prefillSpans: true });
    const examples = [...safety.examples.slice(0, 4), anchor[0]];
    const extras = collatePrefillSpans(examples);
    expect(extras.prefillSpans.slice(0, 4).some((s) => s!.length > 0)).toBe(true);
    expect(extras.prefillSpans[4]).toBeNull();
    const batch = collate(examples, [...examples.slice(0, 4).map(() => 'safety'), 'anchor'], 0, extras);
    for (const o of [{ weight: 0.5 }, { form: 'listmle', topK: 5, weight: 2 }] as PushForwardOptions[]) {
      const [ce, term] = tf.tidy(() => {
        const { logits } = t.model.forward(batch.inputIds, { attentionMask: batch.attentionMask });
        const c = maskedCrossEntropy(logits, batch.inputIds, batch.lossMask);
        return [value(c.sum) / value(c.count), value(pushForwardTerm(logits, extras.prefillSpans, o))];
      });
      expect(term).toBeGreaterThan(0);
      const out = pushForwardObjective(o).compute(t.model, batch);
      expect(value(out.loss)).toBeCloseTo(ce + (o.weight ?? 1) * term, 4);
      expect(value(out.metrics!.push_forward)).toBeCloseTo(term, 5);
      // normalise 'tokens': the summed term over the batch's target tokens (CE's own normaliser)
      const prefilled = extras.prefillSpans.filter((s) => s !== null && s.length > 0).length;
      const tokens = batch.lossMask.sum().dataSync()[0];
      const perToken = pushForwardObjective({ ...o, normalise: 'tokens' }).compute(t.model, batch);
      expect(value(perToken.loss)).toBeCloseTo(ce + (o.weight ?? 1) * term * prefilled / tokens, 4);
      expect(value(perToken.metrics!.push_forward)).toBeCloseTo(term, 5);
    }
    expect(pushForwardObjective({ normalise: 'tokens' }).name).toBe('augmentation+push_forward(weight=1,form=kl,normalise=tokens)');
    expect(pushForwardObjective({ form: 'listmle', topK: 5 }).name).toBe('augmentation+push_forward(weight=1,form=listmle,topK=5)');
    disposeBatch(batch);
  });

  it('augmentModel({ pushForward }) trains two steps in either form, and together with PRESTO', async () => {
    for (const options of [{ pushForward: { form: 'kl' } }, { pushForward: { form: 'listmle', topK: 10 } }, { pushForward: {}, presto: {} }] as const) {
      const { model, result } = await augmentModel(t, TOY_BEHAVIOURS, anchor, settings, options);
      expect(result.steps).toBe(2);
      expect(result.log.every((l) => Number.isFinite(l.loss) && Number.isFinite(l.metrics.push_forward))).toBe(true);
      expect(result.log.some((l) => l.metrics.push_forward !== 0)).toBe(true);
      if ('presto' in options) expect(result.log.every((l) => Number.isFinite(l.metrics.presto))).toBe(true);
      expect(weightsMoved(t.model, model)).toBe(true);
      model.dispose();
    }
    expect(augmentationObjective({ presto: {}, pushForward: {} }).name).toBe('augmentation+presto(weight=1,scale=tokens)+push_forward(weight=1,form=kl)');
  });
});
