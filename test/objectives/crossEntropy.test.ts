import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { crossEntropyObjective, maskedCrossEntropy, targetLogProbs } from '../../lib/objectives/index.js';
import { collate } from '../../lib/train/index.js';
import { Rng } from '../../lib/organism/index.js';

// The engine the kit trains with (fused cross-entropy and AdamW kernels where available; plain ops otherwise).
beforeAll(async () => {
  await initEngine();
});

function randomLogits(rng: Rng, b: number, t: number, v: number): number[][][] {
  return Array.from({ length: b }, () => Array.from({ length: t }, () => Array.from({ length: v }, () => (rng.next() - 0.5) * 8)));
}

function refLogProb(row: number[], target: number): number {
  const max = Math.max(...row);
  const lse = max + Math.log(row.reduce((a, x) => a + Math.exp(x - max), 0));
  return row[target] - lse;
}

describe('cross-entropy objective', () => {
  it('targetLogProbs matches a float64 reference on random logits', () => {
    const rng = new Rng(1);
    const [b, t, v] = [3, 6, 11];
    const logits = randomLogits(rng, b, t, v);
    const ids = Array.from({ length: b }, () => Array.from({ length: t }, () => rng.int(v)));
    const before = tf.memory().numTensors;
    const lt = tf.tensor3d(logits);
    const it_ = tf.tensor2d(ids, undefined, 'int32');
    const result = targetLogProbs(lt, it_);
    const got = result.arraySync() as number[][];
    result.dispose();
    for (let r = 0; r < b; r++) for (let s = 0; s < t - 1; s++) expect(got[r][s]).toBeCloseTo(refLogProb(logits[r][s], ids[r][s + 1]), 4);
    tf.dispose([lt, it_]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('token-level mean over a mixed, padded batch; per-source losses', () => {
    const rng = new Rng(2);
    const v = 7;
    const examples = [
      { ids: [1, 2, 3, 4, 5], lossMask: [0, 0, 1, 1, 1] },
      { ids: [1, 6, 2], lossMask: [0, 1, 1] },
      { ids: [1, 3, 3, 3], lossMask: [0, 0, 0, 1] },
    ];
    const batch = collate(examples, ['safety', 'utility', 'utility'], 0);
    const logits = randomLogits(rng, 3, 5, v);
    const model = { forward: () => ({ logits: tf.tensor3d(logits) }) };
    const out = crossEntropyObjective().compute(model, batch);
    // Reference: concatenate all target tokens' -log p and average.
    const nll: { source: string; value: number }[] = [];
    examples.forEach((e, r) => e.ids.forEach((id, t) => {
      if (t > 0 && e.lossMask[t]) nll.push({ source: r === 0 ? 'safety' : 'utility', value: -refLogProb(logits[r][t - 1], id) });
    }));
    const mean = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
    expect(out.loss.dataSync()[0]).toBeCloseTo(mean(nll.map((x) => x.value)), 4);
    expect(out.metrics!.tokens.dataSync()[0]).toBe(nll.length);
    expect(out.metrics!['loss/safety'].dataSync()[0]).toBeCloseTo(mean(nll.filter((x) => x.source === 'safety').map((x) => x.value)), 4);
    expect(out.metrics!['loss/utility'].dataSync()[0]).toBeCloseTo(mean(nll.filter((x) => x.source === 'utility').map((x) => x.value)), 4);
  });

  it('padding never contributes: collate zeroes the loss mask on pads and at position 0', () => {
    const batch = collate([{ ids: [4, 5], lossMask: [1, 1] }, { ids: [4, 5, 6, 7], lossMask: [1, 1, 1, 1] }], ['a', 'a'], 9);
    expect(batch.inputIds.arraySync()).toEqual([[4, 5, 9, 9], [4, 5, 6, 7]]);
    expect(batch.attentionMask.arraySync()).toEqual([[1, 1, 0, 0], [1, 1, 1, 1]]);
    expect(batch.lossMask.arraySync()).toEqual([[0, 1, 0, 0], [0, 1, 1, 1]]);
    const ce = maskedCrossEntropy(tf.zeros([2, 4, 10]) as tf.Tensor3D, batch.inputIds, batch.lossMask);
    expect(ce.count.dataSync()[0]).toBe(4);
    expect(ce.sum.dataSync()[0]).toBeCloseTo(4 * Math.log(10), 4);
  });
});
