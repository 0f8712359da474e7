import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { responseCrossEntropy } from '../../lib/objectives/responseCE.js';

beforeAll(async () => {
  await initEngine();
});

describe('responseCrossEntropy', () => {
  it('token-level mean of -log p over targets, y_t predicted from column t - 1 (by hand)', () => {
    // V = 3. Row 0: targets at columns 2 and 3; row 1: target at column 1 only.
    const logits = [
      [[0, 0, 0], [1, 2, 3], [0, Math.log(3), 0], [9, 9, 9]],
      [[2, 0, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]],
    ];
    const ids = [[1, 1, 2, 1], [0, 0, 2, 2]];
    // Column 0 of the mask is ignored even when set.
    const mask = [[1, 0, 1, 1], [1, 1, 0, 0]];
    // -log p: row 0 col 2 <- logits[0][1] token 2: -(3 - log(e + e^2 + e^3));
    //         row 0 col 3 <- logits[0][2] token 1: p = 3/5;  row 1 col 1 <- logits[1][0] token 0: p = e^2/(e^2 + 2).
    const nll = [
      -(3 - Math.log(Math.E + Math.E ** 2 + Math.E ** 3)),
      -Math.log(3 / 5),
      -Math.log(Math.E ** 2 / (Math.E ** 2 + 2)),
    ];
    const want = nll.reduce((a, x) => a + x, 0) / 3;
    const before = tf.memory().numTensors;
    const [l, i, m] = [tf.tensor3d(logits), tf.tensor2d(ids, undefined, 'int32'), tf.tensor2d(mask)];
    const loss = responseCrossEntropy(l, i, m);
    expect(loss.shape).toEqual([]);
    expect(loss.dataSync()[0]).toBeCloseTo(want, 5);
    tf.dispose([l, i, m, loss]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('is differentiable, 0 without targets, and checks the mask shape', () => {
    const ids = tf.tensor2d([[0, 1, 2]], undefined, 'int32');
    const mask = tf.tensor2d([[0, 0, 1]]);
    const g = tf.grad((x: tf.Tensor) => responseCrossEntropy(x as tf.Tensor3D, ids, mask))(tf.zeros([1, 3, 3])).arraySync() as number[][][];
    // Only column 1 predicts a target (token 2): softmax - onehot = [1/3, 1/3, -2/3].
    expect(g[0][0]).toEqual([0, 0, 0]);
    g[0][1].forEach((x, j) => expect(x).toBeCloseTo(j === 2 ? -2 / 3 : 1 / 3, 6));
    expect(g[0][2]).toEqual([0, 0, 0]);
    expect(responseCrossEntropy(tf.zeros([1, 3, 3]) as tf.Tensor3D, ids, tf.zeros([1, 3]) as tf.Tensor2D).dataSync()[0]).toBe(0);
    expect(() => responseCrossEntropy(tf.zeros([1, 3, 3]) as tf.Tensor3D, ids, tf.zeros([1, 2]) as tf.Tensor2D)).toThrow(/targetMask/);
  });
});
