import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { mulberry32 } from '../../lib/model/random.js';
import {
  augmentationExample, augmentationObjective, collatePrefillSpans, crossEntropyObjective, maskedCrossEntropy, prestoObjective, prestoTerm,
  resolvePrestoOptions, type AugmentationObjectiveOptions,
} from '../../lib/objectives/index.js';
import * as root from '../../lib/index.js';
import { trainingExample } from '../../lib/metrics/index.js';
import { augmentationSources, augmentModel, AUGMENTATION_DEFAULTS, collate, disposeBatch, fineTune, type TrainExample } from '../../lib/train/index.js';
import { padBatch, spanMask, tinyDecoder, TOY_BEHAVIOURS, weightsMoved, wordTarget } from './helpers.js';

type Att = number[][][][][]; // [L][B][H][Tq][Tk]

/** Random softmax rows (each query's weights over all keys sum to 1). */
function randomAttentions(L: number, B: number, H: number, T: number, seed: number): Att {
  const rand = mulberry32(seed);
  const row = () => {
    const e = Array.from({ length: T }, () => Math.exp(3 * rand()));
    const s = e.reduce((a, x) => a + x, 0);
    return e.map((x) => x / s);
  };
  return Array.from({ length: L }, () => Array.from({ length: B }, () => Array.from({ length: H }, () => Array.from({ length: T }, row))));
}

/** The definition, loop by loop. */
function referencePresto(att: Att, prefill: number[][], attention: number[][]): number {
  let s = 0;
  for (const layer of att) {
    layer.forEach((rows, b) => {
      const first = prefill[b].indexOf(1);
      if (first < 0) return;
      for (const head of rows) {
        for (let q = first; q < head.length; q++) {
          if (attention[b][q] !== 1) continue;
          for (let k = 0; k < head[q].length; k++) if (prefill[b][k] === 1) s += head[q][k];
        }
      }
    });
  }
  return s / att.length;
}

const toTensors = (att: Att) => att.map((a) => tf.tensor4d(a));
const value = (x: tf.Tensor) => x.dataSync()[0];

/** Causal softmax attention [H][n][n] of one unpadded sequence of length n. */
function causalAttention(H: number, n: number, rand: () => number): number[][][] {
  return Array.from({ length: H }, () => Array.from({ length: n }, (_, q) => {
    const e = Array.from({ length: n }, (_, k) => (k <= q ? Math.exp(3 * rand()) : 0));
    const s = e.reduce((a, x) => a + x, 0);
    return e.map((x) => x / s);
  }));
}

/** Embed per-sequence attentions into a padded [L][B][H][W][W] layout; pad queries get random rows (they must not count). */
function embed(per: number[][][][][], offsets: number[], width: number, rand: () => number): Att {
  return per.map((layer) => layer.map((heads, b) => heads.map((rows) => Array.from({ length: width }, (_, q) => {
    const i = q - offsets[b];
    if (i < 0 || i >= rows.length) return Array.from({ length: width }, () => rand() / width);
    return Array.from({ length: width }, (_, k) => (k - offsets[b] >= 0 && k - offsets[b] < rows.length ? rows[i][k - offsets[b]] : 0));
  }))));
}

describe('prestoTerm', () => {
  beforeAll(async () => {
    await initEngine();
  });

  it('equals the loop-by-loop definition on random attentions, with tensor or array masks; lib/index re-exports it', () => {
    const [L, B, H, T] = [3, 4, 2, 8];
    const att = randomAttentions(L, B, H, T, 1);
    const attention = [
      [1, 1, 1, 1, 1, 1, 0, 0], // right-padded, prefill at 2..3
      [1, 1, 1, 1, 1, 1, 1, 1], // no prefill
      [0, 0, 1, 1, 1, 1, 1, 1], // left-padded, prefill at 4..5
      [1, 1, 1, 1, 1, 1, 1, 0], // prefill of one token at 6
    ];
    const prefill = [
      [0, 0, 1, 1, 0, 0, 0, 0],
      [0, 0, 0, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 1, 1, 0, 0],
      [0, 0, 0, 0, 0, 0, 1, 0],
    ];
    const expected = referencePresto(att, prefill, attention);
    expect(expected).toBeGreaterThan(0);
    const tensors = toTensors(att);
    expect(value(prestoTerm(tensors, prefill, attention))).toBeCloseTo(expected, 4);
    expect(value(prestoTerm(tensors, tf.tensor2d(prefill), tf.tensor2d(attention, undefined, 'int32')))).toBeCloseTo(expected, 4);
    expect(root.prestoTerm).toBe(prestoTerm);
  });

  it('rows without a prefill contribute 0, whatever their attentions', () => {
    const att = randomAttentions(2, 2, 3, 6, 2);
    const attention = [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]];
    const prefill = [[0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]];
    const both = value(prestoTerm(toTensors(att), prefill, attention));
    const scrambled = att.map((layer) => [layer[0], randomAttentions(1, 1, 3, 6, 9)[0][0]]);
    expect(value(prestoTerm(toTensors(scrambled), prefill, attention))).toBeCloseTo(both, 5);
    const onlyFirst = att.map((layer) => [layer[0]]);
    expect(value(prestoTerm(toTensors(onlyFirst), [prefill[0]], [attention[0]]))).toBeCloseTo(both, 5);
    expect(value(prestoTerm(toTensors(att), [[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], attention))).toBe(0);
  });

  it('is padding-invariant: left, right, mixed and extra padding of the same sequences give the same term', () => {
    const rand = mulberry32(5);
    const lengths = [7, 4, 6];
    const spans = [{ start: 2, length: 3 }, null, { start: 3, length: 1 }];
    const per = Array.from({ length: 2 }, () => lengths.map((n) => causalAttention(3, n, rand)));
    const terms = ([['right', 'right', 'right'], ['left', 'left', 'left'], ['left', 'right', 'left'], ['right', 'left', 'right']] as const).flatMap((sides) => [7, 10].map((width) => {
      const offsets = lengths.map((n, r) => (sides[r] === 'left' ? width - n : 0));
      const attention = lengths.map((n, r) => Array.from({ length: width }, (_, t) => (t >= offsets[r] && t < offsets[r] + n ? 1 : 0)));
      const prefill = spanMask(spans, offsets, width);
      return value(prestoTerm(toTensors(embed(per, offsets, width, rand)), prefill, attention));
    }));
    expect(terms[0]).toBeGreaterThan(0);
    for (const t of terms) expect(t).toBeCloseTo(terms[0], 5);
  });

  it('rejects a prefill on padding, non-binary masks and mismatched shapes', () => {
    const att = toTensors(randomAttentions(1, 1, 1, 4, 3));
    expect(() => prestoTerm(att, [[0, 0, 1, 1]], [[1, 1, 1, 0]])).toThrow(/marks a padding position/);
    expect(() => prestoTerm(att, [[0, 0.5, 0, 0]], [[1, 1, 1, 1]])).toThrow(/must be 0 or 1/);
    expect(() => prestoTerm(att, [[0, 1, 0]], [[1, 1, 1]])).toThrow(/must be \[1, 4\]/);
    expect(() => prestoTerm([], [[0, 1, 0, 0]], [[1, 1, 1, 1]])).toThrow(/non-empty array/);
  });
});

describe('prestoTerm through a real decoder', () => {
  const target = () => wordTarget(tinyDecoder(3));
  let t: ReturnType<typeof target>;
  let seqs: number[][];
  let spans: ({ start: number; length: number } | null)[];
  beforeAll(async () => {
    await initEngine();
    t = target();
    // (x, h[:k], r) for k = 4, 0 (a plain refusal: no span), 2
    const ks = [4, 0, 2];
    seqs = TOY_BEHAVIOURS.map((b, i) => augmentationExample(t.promptIds(b.request), t.responseIds(b.harmfulResponse!), [...t.responseIds(b.refusal!), 2], ks[i]).ids);
    spans = TOY_BEHAVIOURS.map((b, i) => (ks[i] > 0 ? { start: t.promptIds(b.request).length, length: ks[i] } : null));
  });

  const termFor = (sides: readonly ('left' | 'right')[], extra = 0) => {
    const width = Math.max(...seqs.map((s) => s.length)) + extra;
    const p = padBatch(seqs, sides, width);
    return tf.tidy(() => {
      const out = t.model.forward(p.ids, { attentionMask: p.mask, positionIds: p.positions, outputAttentions: true });
      return value(prestoTerm(out.attentions!, spanMask(spans, p.offsets, width), p.mask));
    });
  };

  it('the same sequences left-, right- or mixed-padded (positions from the mask) give the same term, equal to the rows run alone', () => {
    const right = termFor(['right', 'right', 'right']);
    expect(right).toBeGreaterThan(0);
    for (const sides of [['left', 'left', 'left'], ['left', 'right', 'left'], ['right', 'left', 'left']] as const) {
      expect(termFor(sides)).toBeCloseTo(right, 4);
      expect(termFor(sides, 3)).toBeCloseTo(right, 4);
    }
    const alone = seqs.reduce((sum, s, r) => sum + tf.tidy(() => {
      const out = t.model.forward([s], { outputAttentions: true });
      return value(prestoTerm(out.attentions!, spanMask([spans[r]], [0], s.length), [s.map(() => 1)]));
    }), 0);
    expect(alone).toBeCloseTo(right, 4);
  });

  it('is differentiable through the attention probabilities, and the gradient matches finite differences', () => {
    const p = padBatch(seqs, ['right', 'left', 'right']);
    const prefill = spanMask(spans, p.offsets, p.width);
    const f = () => prestoTerm(t.model.forward(p.ids, { attentionMask: p.mask, positionIds: p.positions, outputAttentions: true }).attentions!, prefill, p.mask);
    const vars = t.model.variables();
    const names = ['model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.v_proj.weight', 'model.layers.1.self_attn.k_proj.weight', 'model.layers.1.self_attn.v_proj.weight', 'model.layers.1.mlp.up_proj.weight'];
    const { value: v0, grads } = tf.variableGrads(f, names.map((n) => vars.get(n)!));
    const g = (n: string) => grads[vars.get(n)!.name];
    // Layer 1's probabilities depend on layer 0 entirely and on layer 1's queries and keys, not on
    // layer 1's values or MLP: the gradient reaches exactly the parameters upstream of some probs.
    for (const n of names.slice(0, 3)) expect(tf.norm(g(n)).dataSync()[0]).toBeGreaterThan(1e-6);
    for (const n of names.slice(3)) expect(g(n) === undefined || tf.norm(g(n)).dataSync()[0] === 0).toBe(true);
    // Directional finite difference along the gradient of q_proj (layer 0): (f(w + e d) - f(w - e d)) / 2e = |g|.
    const w = vars.get(names[0])!;
    const grad = g(names[0]);
    const norm = tf.norm(grad).dataSync()[0];
    const d = tf.div(grad, norm);
    const original = tf.clone(w);
    const eps = 1e-3; // the error shrinks as eps^2 (3% at 1e-2 for this strongly curved init)
    const at = (sign: number) => {
      w.assign(tf.add(original, tf.mul(d, sign * eps)));
      return tf.tidy(() => value(f()));
    };
    const fd = (at(1) - at(-1)) / (2 * eps);
    w.assign(original);
    expect(value(tf.tidy(f))).toBeCloseTo(value(v0), 5);
    expect(Math.abs(fd - norm) / norm).toBeLessThan(5e-3);
  });
});

describe('augmentation + PRESTO objective', () => {
  let t: ReturnType<typeof wordTarget>;
  const settings = { ...AUGMENTATION_DEFAULTS, steps: 2, peakLr: 1e-3, warmupSteps: 0, seed: 1, safetyPerBatch: 3, anchorPerBatch: 1, poolPerTriplet: 4 };
  let anchor: TrainExample[];
  beforeAll(async () => {
    await initEngine();
    t = wordTarget(tinyDecoder(4));
    anchor = [trainingExample(t, 'name a colour', 'blue is a colour'), trainingExample(t, 'count to three', 'one two three')].map((e) => ({ ids: e.ids, lossMask: e.lossMask }));
  });

  /** A batch of safety examples with spans (one of each k) and an anchor row, collated as the trainer does. */
  const batchWith = () => {
    const [safety] = augmentationSources(t, TOY_BEHAVIOURS, anchor, settings, { prefillSpans: true });
    const withPrefill = safety.examples.filter((e) => (e.extras!.prefill as { length: number }).length > 0).slice(0, 2);
    const plain = safety.examples.find((e) => (e.extras!.prefill as { length: number }).length === 0)!;
    const examples = [...withPrefill, plain, anchor[0]];
    return { examples, batch: collate(examples, ['safety', 'safety', 'safety', 'anchor'], t.padTokenId, collatePrefillSpans(examples)) };
  };

  it('loss = token-mean CE + weight * (2 / N) * prestoTerm, from one forward pass with attentions', () => {
    const { examples, batch } = batchWith();
    const mask = batch.extras.prefillMask as tf.Tensor2D;
    // the mask marks exactly each safety example's k harmful tokens after its prompt; the anchor row has none
    const rows = mask.arraySync() as number[][];
    examples.forEach((e, r) => {
      const span = e.extras?.prefill as { start: number; length: number } | undefined;
      expect(rows[r].reduce((a, x) => a + x, 0)).toBe(span?.length ?? 0);
      if (span) expect(rows[r].slice(span.start, span.start + span.length).every((x) => x === 1)).toBe(true);
    });
    const parts = tf.tidy(() => {
      const out = t.model.forward(batch.inputIds, { attentionMask: batch.attentionMask, outputAttentions: true });
      const ce = maskedCrossEntropy(out.logits, batch.inputIds, batch.lossMask);
      return [value(ce.sum), value(ce.count), value(prestoTerm(out.attentions!, mask, batch.attentionMask))];
    });
    const [sum, count, term] = parts;
    expect(term).toBeGreaterThan(0);
    for (const weight of [1, 0.5]) {
      const out = prestoObjective({ weight }).compute(t.model, batch);
      expect(value(out.loss)).toBeCloseTo(sum / count + weight * (2 / count) * term, 4);
      expect(value(out.metrics!.presto)).toBeCloseTo(term, 4);
    }
    const fixed = augmentationObjective({ presto: { scale: 0.1, weight: 2 } }).compute(t.model, batch);
    expect(value(fixed.loss)).toBeCloseTo(sum / count + 0.2 * term, 4);
    // weight 0: the plain augmentation loss (eager attention instead of the fused kernel: equal to rounding)
    const zero = prestoObjective({ weight: 0 }).compute(t.model, batch);
    expect(value(zero.loss)).toBeCloseTo(value(crossEntropyObjective().compute(t.model, batch).loss), 5);
    disposeBatch(batch);
  });

  it('names its settings, rejects bad options and batches without prefill extras', () => {
    expect(prestoObjective().name).toBe('augmentation+presto(weight=1,scale=tokens)');
    expect(() => resolvePrestoOptions({ weight: -1 })).toThrow(/`weight`/);
    expect(() => resolvePrestoOptions({ scale: 'per-token' as never })).toThrow(/`scale`/);
    expect(() => resolvePrestoOptions({ wieght: 1 } as never)).toThrow(/unknown option `wieght`/);
    const { examples } = batchWith();
    const bare = collate(examples, examples.map(() => 'safety'), 0);
    expect(() => prestoObjective().compute(t.model, bare)).toThrow(/collatePrefillSpans/);
    disposeBatch(bare);
  });

  it('augmentModel({ presto }) trains two steps with the attention term; without it, augmentModel is plain fine-tuning on the same sources', async () => {
    const options: AugmentationObjectiveOptions = { presto: { weight: 1 } };
    const { model, result } = await augmentModel(t, TOY_BEHAVIOURS, anchor, settings, options);
    expect(result.steps).toBe(2);
    expect(result.log.every((l) => Number.isFinite(l.loss) && Number.isFinite(l.metrics.presto))).toBe(true);
    expect(result.log.some((l) => l.metrics.presto > 0)).toBe(true);
    expect(weightsMoved(t.model, model)).toBe(true);
    model.dispose();
    const plain = await augmentModel(t, TOY_BEHAVIOURS, anchor, settings);
    const direct = await fineTune(t.model, augmentationSources(t, TOY_BEHAVIOURS, anchor, settings), t.padTokenId, settings);
    expect(plain.result.log.map((l) => l.loss)).toEqual(direct.result.log.map((l) => l.loss));
    expect(weightsMoved(direct.model, plain.model)).toBe(false);
    expect(plain.result.log[0].metrics.presto).toBeUndefined();
    plain.model.dispose();
    direct.model.dispose();
    await expect(augmentModel(t, TOY_BEHAVIOURS, anchor, settings, { presto: {}, objective: crossEntropyObjective() })).rejects.toThrow(/do not pass `objective`/);
  });
});
