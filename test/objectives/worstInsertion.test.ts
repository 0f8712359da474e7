// Random worst-insertion training's pieces against straightforward recomputations: the candidate
// draws, the training example's layout and mask, the continuation log-likelihood (batched and
// right-padded vs one unpadded sequence at a time), and the argmax choice.
import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { mulberry32 } from '../../lib/model/random.js';
import {
  chooseWorstInsertions, continuationLogLikelihoods, insertionExample, insertionScoreSequence, resolveWorstInsertionOptions, sampleInsertionCandidates,
  WORST_INSERTION_DEFAULTS, worstInsertionObjective, type AugmentationTriplet, type CausalLM, type InsertionCandidate,
} from '../../lib/objectives/index.js';
import { worstInsertionCandidates, worstInsertionPrepare, type TrainExample } from '../../lib/train/index.js';
import type { Decoder } from '../../lib/model/index.js';
import { tinyDecoder } from './helpers.js';

function randomTriplet(seed: number, V = 300): AugmentationTriplet {
  const rand = mulberry32(seed);
  const ids = (n: number) => Array.from({ length: n }, () => 10 + Math.floor(rand() * (V - 10)));
  return { prompt: [1, 3, ...ids(2 + Math.floor(rand() * 4)), 4], harmful: ids(4 + Math.floor(rand() * 10)), refusal: [...ids(2 + Math.floor(rand() * 5)), 2] };
}

function logSoftmax(z: readonly number[]): number[] {
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((a, x) => a + Math.exp(x - m), 0));
  return z.map((x) => x - lse);
}

/** The mean log-prob of ids[start..start+length) by one unpadded forward of the sequence, softmax in JS. */
function referenceScore(model: Decoder, s: { ids: readonly number[]; start: number; length: number }): number {
  const logits = tf.tidy(() => model.forward([s.ids as number[]]).logits.arraySync() as number[][][])[0];
  let sum = 0;
  for (let t = s.start; t < s.start + s.length; t++) sum += logSoftmax(logits[t - 1])[s.ids[t]];
  return sum / s.length;
}

describe('worst-insertion options and candidates', () => {
  it('resolves its options with errors naming the option', () => {
    expect(resolveWorstInsertionOptions()).toEqual({ candidates: 4, maxSpan: 16, continuation: 8, plainProbability: 0.5 });
    expect(resolveWorstInsertionOptions({ candidates: 2, continuation: undefined })).toEqual({ ...WORST_INSERTION_DEFAULTS, candidates: 2 });
    expect(() => resolveWorstInsertionOptions({ candidates: 0 })).toThrow(/worstInsertion: `candidates` must be an integer >= 1, but is 0/);
    expect(() => resolveWorstInsertionOptions({ maxSpan: 1.5 })).toThrow(/`maxSpan`/);
    expect(() => resolveWorstInsertionOptions({ continuation: '8' as never })).toThrow(/`continuation` must be an integer >= 1, but is "8"/);
    expect(() => resolveWorstInsertionOptions({ plainProbability: 1 })).toThrow(/`plainProbability` must be a number in \[0, 1\)/);
    expect(() => resolveWorstInsertionOptions({ span: 3 } as never)).toThrow(/unknown option `span`/);
    expect(worstInsertionObjective({ candidates: 3 }).name).toBe('cross_entropy+worst_insertion(candidates=3,maxSpan=16,continuation=8,plain=0.5)');
  });

  it('draws j uniform in [0, |r|] and n uniform in [1, min(nMax, |h| - 1)], two draws per candidate, reproducibly', () => {
    const t: AugmentationTriplet = { prompt: [1, 4], harmful: [20, 21, 22, 23, 24, 25], refusal: [30, 31, 32, 2] };
    const rand = mulberry32(7);
    const draws: number[] = [];
    const next = () => {
      const x = rand();
      draws.push(x);
      return x;
    };
    const cs = sampleInsertionCandidates(t, { candidates: 3000, maxSpan: 4 }, next);
    expect(draws.length).toBe(6000);
    cs.forEach((c, i) => {
      expect(c.j).toBe(Math.floor(draws[2 * i] * 4));
      expect(c.n).toBe(1 + Math.floor(draws[2 * i + 1] * 4));
    });
    expect(new Set(cs.map((c) => c.j))).toEqual(new Set([0, 1, 2, 3]));
    expect(new Set(cs.map((c) => c.n))).toEqual(new Set([1, 2, 3, 4]));
    // nMax beyond |h| - 1: n stops one short of the whole answer
    const long = sampleInsertionCandidates(t, { candidates: 3000, maxSpan: 100 }, mulberry32(1));
    expect(Math.max(...long.map((c) => c.n))).toBe(5);
    expect(sampleInsertionCandidates(t, { candidates: 5, maxSpan: 4 }, mulberry32(3))).toEqual(sampleInsertionCandidates(t, { candidates: 5, maxSpan: 4 }, mulberry32(3)));
    expect(() => sampleInsertionCandidates({ ...t, harmful: [20] }, { candidates: 1, maxSpan: 4 }, rand)).toThrow(/at least 2 tokens/);
  });

  it('the training example is x + r[:j] + h[:n] + r + eos with the loss on r + eos only; the scoring sequence ends m tokens into h', () => {
    for (let seed = 0; seed < 20; seed++) {
      const t = randomTriplet(seed);
      const r = t.refusal.slice(0, -1);
      const [c] = sampleInsertionCandidates(t, { candidates: 1, maxSpan: 5 }, mulberry32(seed + 100));
      const e = insertionExample(t, c);
      const context = [...t.prompt, ...r.slice(0, c.j), ...t.harmful.slice(0, c.n)];
      expect(e.ids).toEqual([...context, ...t.refusal]);
      expect(e.lossMask).toEqual([...context.map(() => 0), ...t.refusal.map(() => 1)]);
      const s = insertionScoreSequence(t, c, 3);
      const m = Math.min(3, t.harmful.length - c.n);
      expect(s).toEqual({ ids: [...context, ...t.harmful.slice(c.n, c.n + m)], start: context.length, length: m });
    }
    const t = randomTriplet(1);
    expect(() => insertionExample(t, { j: t.refusal.length, n: 1 })).toThrow(/j must be an integer in \[0, /);
    expect(() => insertionExample(t, { j: 0, n: t.harmful.length })).toThrow(/n must be an integer in \[1, /);
  });
});

describe('worst-insertion scoring and choice on a llama', () => {
  let model: Decoder;
  beforeAll(async () => {
    await initEngine();
    model = tinyDecoder(3, 0.3);
  });

  it('continuationLogLikelihoods (batched, right-padded) equals one unpadded forward per sequence', () => {
    const seqs = Array.from({ length: 7 }, (_, i) => {
      const t = randomTriplet(40 + i);
      const [c] = sampleInsertionCandidates(t, { candidates: 1, maxSpan: 6 }, mulberry32(i));
      return insertionScoreSequence(t, c, 1 + (i % 4));
    });
    const batched = continuationLogLikelihoods(model, seqs, 0, 3);
    seqs.forEach((s, i) => expect(batched[i]).toBeCloseTo(referenceScore(model, s), 4));
    expect(() => continuationLogLikelihoods(model, [{ ids: [1, 2, 3], start: 2, length: 2 }], 0)).toThrow(/scores \[2, 4\) of its 3 tokens/);
  });

  it('chooses the argmax of the recomputed scores for each triplet (the first on ties)', () => {
    const triplets = [0, 1, 2, 3].map((i) => randomTriplet(60 + i));
    const candidates = triplets.map((t, i) => sampleInsertionCandidates(t, { candidates: 5, maxSpan: 8 }, mulberry32(i)));
    const chosen = chooseWorstInsertions(model, triplets, candidates, 4, 0, 6);
    chosen.forEach((choice, i) => {
      const ref = candidates[i].map((c) => referenceScore(model, insertionScoreSequence(triplets[i], c, 4)));
      choice.candidates.forEach((c, k) => expect(c.score).toBeCloseTo(ref[k], 4));
      const best = ref.indexOf(Math.max(...ref));
      // scores that differ by less than the float tolerance could swap; here only repeats of the best candidate come that close
      expect(candidates[i].filter((_, k) => Math.abs(ref[k] - ref[best]) < 1e-4)).toEqual(candidates[i].filter((c) => c.j === candidates[i][best].j && c.n === candidates[i][best].n));
      expect({ j: choice.j, n: choice.n }).toEqual(candidates[i][best]);
      expect(choice.score).toBe(choice.candidates[best].score);
    });
    // A model with the same logits everywhere scores every candidate alike: the first is kept.
    const flat: CausalLM = { forward: (ids) => ({ logits: tf.zeros([ids.shape[0], ids.shape[1], 300]) as tf.Tensor3D }) };
    const tie = chooseWorstInsertions(flat, triplets.slice(0, 1), [candidates[0]], 4, 0);
    expect({ j: tie[0].j, n: tie[0].n }).toEqual(candidates[0][0]);
  });

  it('worstInsertionPrepare replaces insertion slots by their worst insertion under the model at that step, seeded by (seed, step, row), and leaves other rows', () => {
    const triplets = [0, 1, 2].map((i) => randomTriplet(80 + i));
    const o = resolveWorstInsertionOptions({ candidates: 3, maxSpan: 5, continuation: 3 });
    const plain = (t: AugmentationTriplet): TrainExample => ({ ids: [...t.prompt, ...t.refusal], lossMask: [...t.prompt.map(() => 0), ...t.refusal.map(() => 1)] });
    const examples: TrainExample[] = [
      { ...plain(triplets[0]), extras: { worstInsertion: { triplet: 0 } } }, plain(triplets[1]), { ...plain(triplets[2]), extras: { worstInsertion: { triplet: 2 } } },
      { ...plain(triplets[0]), extras: { worstInsertion: { triplet: 0 } } },
    ];
    const seen: unknown[] = [];
    const prepare = worstInsertionPrepare(triplets, o, 5, 0, (s) => seen.push(s));
    const out = prepare(examples, { step: 3, sources: ['safety', 'safety', 'safety', 'safety'], model }) as TrainExample[];
    expect(out[1]).toBe(examples[1]);
    for (const [row, ti] of [[0, 0], [2, 2], [3, 0]]) {
      const cs: InsertionCandidate[] = worstInsertionCandidates(triplets[ti], o, 5, 3, row);
      const ref = cs.map((c) => referenceScore(model, insertionScoreSequence(triplets[ti], c, 3)));
      const best = cs[ref.indexOf(Math.max(...ref))];
      const e = insertionExample(triplets[ti], best);
      expect(out[row].ids).toEqual(e.ids);
      expect(out[row].lossMask).toEqual(e.lossMask);
      expect(out[row].extras?.insertion).toMatchObject({ triplet: ti, j: best.j, n: best.n });
    }
    // rows 0 and 3 share a triplet but draw their own candidates
    expect(worstInsertionCandidates(triplets[0], o, 5, 3, 0)).not.toEqual(worstInsertionCandidates(triplets[0], o, 5, 3, 3));
    expect(worstInsertionCandidates(triplets[0], o, 5, 3, 0)).not.toEqual(worstInsertionCandidates(triplets[0], o, 5, 4, 0));
    expect(seen).toHaveLength(1);
    expect((seen[0] as { step: number; choices: { row: number }[] }).choices.map((c) => c.row)).toEqual([0, 2, 3]);
    // the same inputs give the same examples
    expect((prepare(examples, { step: 3, sources: [], model }) as TrainExample[]).map((e) => e.ids)).toEqual(out.map((e) => e.ids));
    expect(() => prepare([{ ...plain(triplets[0]), extras: { worstInsertion: { triplet: 9 } } }], { step: 0, sources: [], model })).toThrow(/names triplet 9, but there are 3/);
  });
});
