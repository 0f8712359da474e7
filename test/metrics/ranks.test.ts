import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { tokenRanks } from '../../lib/metrics/ranks.js';

beforeAll(async () => {
  await initEngine();
});

const lse = (xs: number[]) => Math.log(xs.reduce((a, x) => a + Math.exp(x), 0));

describe('tokenRanks', () => {
  it('[B, V]: rank 1 = most likely, ties share the best rank, log-probs by hand', () => {
    const rows = [[1, 3, 3, 0], [2, -1, 0.5, 4]];
    const logits = tf.tensor2d(rows);
    const before = tf.memory().numTensors;
    // Row 0: tokens 1 and 2 tie at the top (rank 1 both); token 0 has 2 strictly greater (rank 3); token 3 is last.
    for (const [id, rank] of [[1, 1], [2, 1], [0, 3], [3, 4]]) {
      const out = tokenRanks(logits, [id, 3]);
      expect(out.ranks).toEqual([rank, 1]);
      expect(out.logProbs[0]).toBeCloseTo(rows[0][id] - lse(rows[0]), 5);
      expect(out.logProbs[1]).toBeCloseTo(4 - lse(rows[1]), 5);
    }
    expect(tf.memory().numTensors).toBe(before);
    // Ids as a tensor.
    const t = tokenRanks(logits, tf.tensor1d([0, 1], 'int32'));
    expect(t.ranks).toEqual([3, 4]);
    expect(t.logProbs[1]).toBeCloseTo(-1 - lse(rows[1]), 5);
  });

  it('[B, T, V]: position by position, no shift; nested arrays out', () => {
    const l = [
      [[0, 1, 2], [5, 5, 5]],
      [[-1, 0, -2], [3, 1, 2]],
    ];
    const out = tokenRanks(tf.tensor3d(l), [[0, 2], [1, 1]]);
    expect(out.ranks).toEqual([[3, 1], [1, 3]]);
    expect(out.logProbs[0][0]).toBeCloseTo(0 - lse(l[0][0]), 5);
    expect(out.logProbs[0][1]).toBeCloseTo(Math.log(1 / 3), 5);
    expect(out.logProbs[1][0]).toBeCloseTo(0 - lse(l[1][0]), 5);
    expect(out.logProbs[1][1]).toBeCloseTo(1 - lse(l[1][1]), 5);
    const fromTensor = tokenRanks(tf.tensor3d(l), tf.tensor2d([[0, 2], [1, 1]], undefined, 'int32'));
    expect(fromTensor.ranks).toEqual(out.ranks);
  });

  it('rejects out-of-range ids and mismatched shapes', () => {
    const logits = tf.zeros([2, 4]) as tf.Tensor2D;
    expect(() => tokenRanks(logits, [0, 4])).toThrow(/not in \[0, 3\]/);
    expect(() => tokenRanks(logits, [0])).toThrow(/shape/);
    expect(() => tokenRanks(tf.zeros([2, 3, 4]) as tf.Tensor3D, [[0, 1, 2]])).toThrow(/shape/);
  });
});
