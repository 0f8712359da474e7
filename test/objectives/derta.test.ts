// DeRTa: the RTO term against a per-position loop on random logits, the objective's joint token
// mean against per-example recomputation on a llama, the sources (MLE-prefix, RTO, anchor) and
// training steps through dertaModel.
import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { mulberry32 } from '../../lib/model/random.js';
import {
  collateRtoSpans, DERTA_DEFAULTS, dertaObjective, resolveDertaOptions, rtoExample, rtoKeptPositions, rtoPositions, rtoTerm, type RtoSpan,
} from '../../lib/objectives/index.js';
import { trainingExample, type Target } from '../../lib/metrics/index.js';
import {
  AUGMENTATION_DEFAULTS, augmentationTripletsFor, collate, dertaModel, dertaRtoPerBatch, dertaSources, disposeBatch, type TrainExample,
} from '../../lib/train/index.js';
import type { Decoder } from '../../lib/model/index.js';
import { tinyDecoder, TOY_BEHAVIOURS, weightsMoved, wordTarget } from './helpers.js';

const value = (x: tf.Tensor) => x.dataSync()[0];

function logSoftmax(z: readonly number[]): number[] {
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((a, x) => a + Math.exp(x - m), 0));
  return z.map((x) => x - lse);
}

describe('DeRTa options and RTO examples', () => {
  it('resolves its options with errors naming the option', () => {
    expect(resolveDertaOptions()).toEqual({ rtoShare: 0.5, keepFraction: 1, refusalToken: null });
    expect(resolveDertaOptions({ keepFraction: 0.05, refusalToken: 7 })).toEqual({ ...DERTA_DEFAULTS, keepFraction: 0.05, refusalToken: 7 });
    expect(() => resolveDertaOptions({ rtoShare: 1 })).toThrow(/derta: `rtoShare` must be a number in \(0, 1\)/);
    expect(() => resolveDertaOptions({ keepFraction: 0 })).toThrow(/`keepFraction`/);
    expect(() => resolveDertaOptions({ refusalToken: -2 })).toThrow(/`refusalToken`/);
    expect(() => resolveDertaOptions({ share: 0.5 } as never)).toThrow(/unknown option `share`/);
    expect(dertaRtoPerBatch(16, 0.5)).toBe(8);
    expect(dertaRtoPerBatch(3, 0.5)).toBe(2);
    expect(dertaRtoPerBatch(2, 0.9)).toBe(1);
    expect(() => dertaRtoPerBatch(1, 0.5)).toThrow(/`safetyPerBatch` must be an integer >= 2/);
  });

  it('an RTO example is x + h + eos with no MLE target and its span over the |h| + 1 response positions', () => {
    const e = rtoExample([1, 3, 11, 4], [20, 21, 22], 2, 30);
    expect(e.ids).toEqual([1, 3, 11, 4, 20, 21, 22, 2]);
    expect(e.lossMask).toEqual(e.ids.map(() => 0));
    expect(e.extras.rto).toEqual({ start: 4, length: 4, token: 30 });
    expect(rtoExample([1, 4], [20], 2, 30, [0]).extras.rto).toEqual({ start: 2, length: 2, token: 30, keep: [0] });
    expect(() => rtoExample([1, 4], [20], 2, 30, [2])).toThrow(/strictly increasing offsets in \[0, 2\)/);
  });

  it('kept positions: max(1, ceil(f * length)) distinct sorted offsets, every offset at f = 1, seeded', () => {
    expect(rtoKeptPositions(7, 1, Math.random)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    for (const [length, f] of [[10, 0.05], [40, 0.05], [41, 0.05], [9, 0.5]] as const) {
      const k = rtoKeptPositions(length, f, mulberry32(length));
      expect(k).toHaveLength(Math.max(1, Math.ceil(f * length)));
      expect(k).toEqual([...new Set(k)].sort((a, b) => a - b));
      expect(k.every((i) => i >= 0 && i < length)).toBe(true);
      expect(rtoKeptPositions(length, f, mulberry32(length))).toEqual(k);
    }
    // every offset is drawn sometimes
    const seen = new Set<number>();
    const rand = mulberry32(9);
    for (let i = 0; i < 400; i++) rtoKeptPositions(6, 0.2, rand).forEach((x) => seen.add(x));
    expect(seen).toEqual(new Set([0, 1, 2, 3, 4, 5]));
  });
});

describe('rtoTerm', () => {
  beforeAll(async () => {
    await initEngine();
  });

  it('per row: the sum over kept positions i of -log softmax(logits[start - 1 + i])[token]; rows without a span give 0', () => {
    const [B, T, V] = [4, 7, 11];
    const rand = mulberry32(4);
    const data = Array.from({ length: B * T * V }, () => 6 * (rand() - 0.5));
    const logits = tf.tensor3d(data, [B, T, V]);
    const rows = logits.arraySync();
    const spans: (RtoSpan | null)[] = [{ start: 2, length: 4, token: 3 }, null, { start: 1, length: 6, token: 10, keep: [0, 3, 5] }, { start: 5, length: 2, token: 0 }];
    const expected = spans.map((s, b) => {
      if (!s) return [0, 0];
      const keep = s.keep ?? Array.from({ length: s.length }, (_, i) => i);
      return [keep.reduce((a, i) => a - logSoftmax(rows[b][s.start - 1 + i])[s.token], 0), keep.length];
    });
    const r = rtoTerm(logits, spans);
    Array.from(r.perRow.dataSync()).forEach((x, b) => expect(x).toBeCloseTo(expected[b][0], 4));
    expect(Array.from(r.rowCount.dataSync())).toEqual(expected.map((e) => e[1]));
    expect(value(r.sum)).toBeCloseTo(expected.reduce((a, e) => a + e[0], 0), 4);
    expect(value(r.count)).toBe(4 + 3 + 2);
    expect(rtoPositions(spans, T).flat).toEqual([1, 2, 3, 4, 2 * T + 0, 2 * T + 3, 2 * T + 5, 3 * T + 4, 3 * T + 5]);
    expect(value(rtoTerm(logits, [null, null, null, null]).count)).toBe(0);
    // the gradient reaches exactly the RTO positions
    const g = tf.grad((l: tf.Tensor) => rtoTerm(l as tf.Tensor3D, spans).sum)(logits).arraySync() as number[][][];
    const moved = g.map((row) => row.map((v) => v.some((x) => x !== 0)).map((m, t) => (m ? t : -1)).filter((t) => t >= 0));
    expect(moved).toEqual([[1, 2, 3, 4], [], [0, 3, 5], [4, 5]]);
    expect(() => rtoTerm(logits, spans.slice(1))).toThrow(/3 spans for 4 rows/);
    expect(() => rtoTerm(logits, [{ start: 5, length: 3, token: 1 }, null, null, null])).toThrow(/start \+ length <= the row's 7 tokens/);
  });
});

describe('dertaObjective and dertaModel on a llama', () => {
  let t: Target;
  let model: Decoder;
  let anchor: TrainExample[];
  const settings = { ...AUGMENTATION_DEFAULTS, steps: 2, peakLr: 1e-3, warmupSteps: 0, seed: 4, safetyPerBatch: 4, anchorPerBatch: 1, poolPerTriplet: 6 };
  beforeAll(async () => {
    await initEngine();
    model = tinyDecoder(8);
    t = wordTarget(model);
    anchor = [trainingExample(t, 'name a colour', 'blue is a colour')].map((e) => ({ ids: e.ids, lossMask: e.lossMask }));
  });

  it('sources: MLE-prefix pool (k = 0 for about one in three, k < |h|), RTO rows with the first refusal token or a fixed one, the anchor', () => {
    const triplets = augmentationTripletsFor(t, TOY_BEHAVIOURS);
    const [safety, rto, a] = dertaSources(t, TOY_BEHAVIOURS, anchor, { ...settings, poolPerTriplet: 300 });
    expect([safety.name, safety.perBatch, rto.name, rto.perBatch, a.name, a.perBatch]).toEqual(['safety', 2, 'rto', 2, 'anchor', 1]);
    const ks = safety.examples.map((e, i) => {
      const tr = triplets[Math.floor(i / 300)];
      const k = e.ids.length - tr.prompt.length - tr.refusal.length;
      expect(e.ids).toEqual([...tr.prompt, ...tr.harmful.slice(0, k), ...tr.refusal]);
      expect(k).toBeLessThan(tr.harmful.length);
      return k;
    });
    const plain = ks.filter((k) => k === 0).length / ks.length;
    expect(plain).toBeGreaterThan(0.28);
    expect(plain).toBeLessThan(0.39);
    expect(rto.examples).toHaveLength(3);
    rto.examples.forEach((e, i) => {
      expect(e).toEqual(rtoExample(triplets[i].prompt, triplets[i].harmful, 2, triplets[i].refusal[0]));
    });
    const fixed = dertaSources(t, TOY_BEHAVIOURS, anchor, settings, { refusalToken: 12, keepFraction: 0.2 })[1];
    expect(fixed.examples).toHaveLength(18);
    fixed.examples.forEach((e) => {
      const span = e.extras!.rto as RtoSpan;
      expect(span.token).toBe(12);
      expect(span.keep!.length).toBe(Math.max(1, Math.ceil(0.2 * span.length)));
    });
    expect(() => dertaSources(t, TOY_BEHAVIOURS, anchor, settings, { refusalToken: 400 })).toThrow(/not in the model's vocabulary \[0, 320\)/);
  });

  it('loss = (sum of MLE target NLLs + sum of RTO NLLs) / (MLE targets + RTO positions), recomputed example by example', () => {
    const [safety, rto] = dertaSources(t, TOY_BEHAVIOURS, anchor, settings, { keepFraction: 0.5 });
    const examples = [safety.examples[0], safety.examples[7], rto.examples[0], rto.examples[8], anchor[0]];
    const sources = ['safety', 'safety', 'rto', 'rto', 'anchor'];
    const batch = collate(examples, sources, 0, collateRtoSpans(examples));
    let sum = 0;
    let count = 0;
    const perSource: Record<string, [number, number]> = { safety: [0, 0], rto: [0, 0], anchor: [0, 0] };
    examples.forEach((e, r) => {
      const logits = tf.tidy(() => model.forward([e.ids]).logits.arraySync() as number[][][])[0];
      let s = 0;
      let c = 0;
      for (let p = 1; p < e.ids.length; p++) {
        if (e.lossMask[p] === 1) {
          s -= logSoftmax(logits[p - 1])[e.ids[p]];
          c++;
        }
      }
      const span = e.extras?.rto as RtoSpan | undefined;
      if (span) {
        for (const i of span.keep ?? Array.from({ length: span.length }, (_, k) => k)) {
          s -= logSoftmax(logits[span.start - 1 + i])[span.token];
          c++;
        }
      }
      sum += s;
      count += c;
      perSource[sources[r]][0] += s;
      perSource[sources[r]][1] += c;
    });
    const out = dertaObjective().compute(model, batch);
    expect(value(out.loss)).toBeCloseTo(sum / count, 4);
    expect(value(out.metrics!.tokens)).toBe(count);
    for (const name of ['safety', 'rto', 'anchor']) expect(value(out.metrics![`loss/${name}`])).toBeCloseTo(perSource[name][0] / perSource[name][1], 4);
    expect(value(out.metrics!.rto)).toBeCloseTo(perSource.rto[0] / perSource.rto[1], 4);
    expect(value(out.metrics!['loss/ce'])).toBeCloseTo((perSource.safety[0] + perSource.anchor[0]) / (perSource.safety[1] + perSource.anchor[1]), 4);
    const noExtras = collate(examples, sources, 0);
    expect(() => dertaObjective().compute(model, noExtras)).toThrow(/needs `extras.rtoSpans`/);
    disposeBatch(batch);
    disposeBatch(noExtras);
  });

  it('dertaModel trains two steps (finite loss and RTO term, weights move, original untouched)', async () => {
    const before = Array.from(model.variables().get('model.embed_tokens.weight')!.dataSync().slice(0, 32));
    const { model: trained, result } = await dertaModel(t, TOY_BEHAVIOURS, anchor, settings);
    expect(result.steps).toBe(2);
    expect(result.log.every((l) => Number.isFinite(l.loss) && l.metrics.rto > 0 && Number.isFinite(l.metrics['loss/safety']))).toBe(true);
    expect(weightsMoved(model, trained)).toBe(true);
    expect(Array.from(model.variables().get('model.embed_tokens.weight')!.dataSync().slice(0, 32))).toEqual(before);
    trained.dispose();
    await expect(dertaModel(t, TOY_BEHAVIOURS, anchor, settings, { batchExtras: () => ({}) } as never)).rejects.toThrow(/do not pass `batchExtras`/);
  });
});
