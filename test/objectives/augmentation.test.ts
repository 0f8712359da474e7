import { describe, expect, it } from 'vitest';
import { augmentationExample, sampleAugmentationExamples, type AugmentationTriplet } from '../../lib/objectives/index.js';

// Ids are arbitrary small integers: 1 = <s>, 2 = </s>, 3 = <user>, 4 = <assistant>, 10+ = words.
const prompt = [1, 3, 10, 11, 12, 4];
const harmful = [20, 21, 22, 23, 24];
const refusal = [30, 31, 32, 2]; // "i cannot help </s>"

describe('augmentationExample', () => {
  it('k = 0: prompt -> refusal, loss on the refusal and its </s> only', () => {
    const e = augmentationExample(prompt, harmful, refusal, 0);
    expect(e.ids).toEqual([1, 3, 10, 11, 12, 4, 30, 31, 32, 2]);
    expect(e.lossMask).toEqual([0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
    expect(e.k).toBe(0);
  });

  it('k = 2: the first two harmful tokens are context without loss', () => {
    const e = augmentationExample(prompt, harmful, refusal, 2);
    expect(e.ids).toEqual([1, 3, 10, 11, 12, 4, 20, 21, 30, 31, 32, 2]);
    expect(e.lossMask).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
  });

  it('k = |h|: the whole harmful answer, then the refusal', () => {
    const e = augmentationExample(prompt, harmful, refusal, 5);
    expect(e.ids).toEqual([...prompt, ...harmful, ...refusal]);
    expect(e.lossMask).toEqual([...prompt.map(() => 0), ...harmful.map(() => 0), 1, 1, 1, 1]);
  });

  it('rejects k out of range and bad ids, naming the field', () => {
    expect(() => augmentationExample(prompt, harmful, refusal, 6)).toThrow(/`k` must be an integer in \[0, 5\]/);
    expect(() => augmentationExample(prompt, harmful, refusal, -1)).toThrow(/`k`/);
    expect(() => augmentationExample(prompt, harmful, refusal, 1.5)).toThrow(/`k`/);
    expect(() => augmentationExample([], harmful, refusal, 0)).toThrow(/`promptIds` is empty/);
    expect(() => augmentationExample(prompt, harmful, [], 0)).toThrow(/`refusalIds` is empty/);
    expect(() => augmentationExample(prompt, [20, -1], refusal, 0)).toThrow(/`harmfulIds`\[1\]/);
  });
});

describe('sampleAugmentationExamples', () => {
  const triplets: AugmentationTriplet[] = [
    { prompt, harmful, refusal },
    { prompt: [1, 3, 13, 4], harmful: Array.from({ length: 150 }, (_, i) => 100 + i), refusal: [33, 2] },
  ];

  it('every example is augmentationExample(triplet, k) with k = 0 or 1..min(100, |h|)', () => {
    const ex = sampleAugmentationExamples(triplets, { count: 400, seed: 7 });
    expect(ex).toHaveLength(400);
    ex.forEach((e, i) => {
      expect(e.triplet).toBe(i % 2);
      const t = triplets[e.triplet];
      const { ids, lossMask } = augmentationExample(t.prompt, t.harmful, t.refusal, e.k);
      expect(e.ids).toEqual(ids);
      expect(e.lossMask).toEqual(lossMask);
      expect(e.k).toBeGreaterThanOrEqual(0);
      expect(e.k).toBeLessThanOrEqual(e.triplet === 0 ? 5 : 100);
      // the loss covers exactly the refusal (incl. </s>)
      expect(lossMask.reduce((a, b) => a + b, 0)).toBe(t.refusal.length);
    });
  });

  it('the coin is fair and k is uniform over 1..|h| inclusive (and 1..|h|-1 with kInclusiveUpper false)', () => {
    const one: AugmentationTriplet[] = [{ prompt, harmful, refusal }];
    const ex = sampleAugmentationExamples(one, { count: 20_000, seed: 3 });
    const zeros = ex.filter((e) => e.k === 0).length / ex.length;
    expect(zeros).toBeGreaterThan(0.48);
    expect(zeros).toBeLessThan(0.52);
    const counts = [0, 0, 0, 0, 0, 0];
    for (const e of ex) counts[e.k]++;
    // each of k = 1..5 gets ~10% (half the examples, split five ways); the upper bound 5 is reached
    for (let k = 1; k <= 5; k++) expect(Math.abs(counts[k] / ex.length - 0.1)).toBeLessThan(0.012);
    const exclusive = sampleAugmentationExamples(one, { count: 5000, seed: 3, kInclusiveUpper: false });
    expect(Math.max(...exclusive.map((e) => e.k))).toBe(4);
    expect(exclusive.some((e) => e.k === 1)).toBe(true);
    // maxK caps k below |h|
    const long = sampleAugmentationExamples([triplets[1]], { count: 5000, seed: 4 });
    expect(Math.max(...long.map((e) => e.k))).toBe(100);
    const capped = sampleAugmentationExamples([triplets[1]], { count: 5000, seed: 4, maxK: 10 });
    expect(Math.max(...capped.map((e) => e.k))).toBe(10);
  });

  it('perTriplet: triplet-major order; deterministic in the seed, different across seeds', () => {
    const a = sampleAugmentationExamples(triplets, { perTriplet: 10, seed: 11 });
    expect(a.map((e) => e.triplet)).toEqual([...Array(10).fill(0), ...Array(10).fill(1)]);
    const b = sampleAugmentationExamples(triplets, { perTriplet: 10, seed: 11 });
    expect(b).toEqual(a);
    const c = sampleAugmentationExamples(triplets, { perTriplet: 10, seed: 12 });
    expect(c.map((e) => e.k)).not.toEqual(a.map((e) => e.k));
  });

  it('validates its options', () => {
    expect(() => sampleAugmentationExamples([], { count: 1, seed: 0 })).toThrow(/`triplets` is empty/);
    expect(() => sampleAugmentationExamples(triplets, { seed: 0 })).toThrow(/exactly one of `count` and `perTriplet`/);
    expect(() => sampleAugmentationExamples(triplets, { count: 1, perTriplet: 1, seed: 0 })).toThrow(/exactly one/);
    expect(() => sampleAugmentationExamples(triplets, { count: 1, seed: 0.5 })).toThrow(/`seed`/);
    expect(() => sampleAugmentationExamples(triplets, { count: 1, seed: 0, maxK: 0 })).toThrow(/`maxK`/);
    expect(() => sampleAugmentationExamples(triplets, { count: 1, seed: 0, prefixProbability: 2 })).toThrow(/`prefixProbability`/);
  });
});
