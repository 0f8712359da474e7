import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { perTokenKL } from '../../lib/metrics/kl.js';
import { Rng } from '../../lib/util/rng.js';

beforeAll(async () => {
  await initEngine();
});

function randomLogits(rng: Rng, b: number, t: number, v: number, scale = 8): number[][][] {
  return Array.from({ length: b }, () => Array.from({ length: t }, () => Array.from({ length: v }, () => (rng.next() - 0.5) * scale)));
}

/** Float64 log-softmax. */
function logSoftmax(row: number[]): number[] {
  const m = Math.max(...row);
  const lse = m + Math.log(row.reduce((a, x) => a + Math.exp(x - m), 0));
  return row.map((x) => x - lse);
}

/** Float64 KL(softmax(p) || softmax(q)). */
function klRef(p: number[], q: number[]): number {
  const lp = logSoftmax(p);
  const lq = logSoftmax(q);
  return lp.reduce((a, x, i) => a + Math.exp(x) * (x - lq[i]), 0);
}

describe('perTokenKL', () => {
  const [b, t, v] = [3, 5, 9];
  const mask = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]];

  it('matches a float64 reference at real positions and is exactly 0 on padding', () => {
    const rng = new Rng(11);
    const p = randomLogits(rng, b, t, v);
    const q = randomLogits(rng, b, t, v);
    const before = tf.memory().numTensors;
    const [tp, tq, tm] = [tf.tensor3d(p), tf.tensor3d(q), tf.tensor2d(mask, undefined, 'int32')];
    const out = perTokenKL(tp, tq, tm);
    expect(out.shape).toEqual([b, t]);
    const got = out.arraySync();
    for (let r = 0; r < b; r++) {
      for (let s = 0; s < t; s++) {
        if (mask[r][s]) {
          const want = klRef(p[r][s], q[r][s]);
          expect(want).toBeGreaterThan(0);
          expect(Math.abs(got[r][s] - want)).toBeLessThan(1e-5 * Math.max(1, want));
        } else {
          expect(got[r][s]).toBe(0);
        }
      }
    }
    tf.dispose([tp, tq, tm, out]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('is stable for large logits, 0 for identical distributions, and ignores non-finite logits on pads', () => {
    const rng = new Rng(12);
    const p = randomLogits(rng, b, t, v, 400); // exp would overflow without logSoftmax
    const q = randomLogits(rng, b, t, v, 400);
    const tp = tf.tensor3d(p);
    const same = perTokenKL(tp, tp, tf.tensor2d(mask)).arraySync();
    same.forEach((row) => row.forEach((x) => expect(x).toBe(0)));
    const big = perTokenKL(tp, tf.tensor3d(q), tf.tensor2d(mask)).arraySync();
    for (let r = 0; r < b; r++) for (let s = 0; s < t; s++) {
      if (mask[r][s]) expect(Math.abs(big[r][s] - klRef(p[r][s], q[r][s]))).toBeLessThan(1e-5 * Math.max(1, klRef(p[r][s], q[r][s])));
    }
    // NaN / Infinity in the pads' logits (float mask this time).
    const dirty = p.map((row, r) => row.map((l, s) => (mask[r][s] ? l : l.map((_, j) => (j % 2 ? NaN : Infinity)))));
    const tDirty = tf.tensor3d(dirty);
    const out = perTokenKL(tDirty, tf.tensor3d(q), tf.tensor2d(mask, undefined, 'float32')).arraySync();
    for (let r = 0; r < b; r++) for (let s = 0; s < t; s++) {
      if (mask[r][s]) expect(Number.isFinite(out[r][s])).toBe(true);
      else expect(out[r][s]).toBe(0);
    }
    // ... and they get a zero (not NaN) gradient.
    const g = tf.grad((x: tf.Tensor) => tf.sum(perTokenKL(x as tf.Tensor3D, tf.tensor3d(q), tf.tensor2d(mask))))(tDirty).arraySync() as number[][][];
    g.forEach((row) => row.forEach((col) => col.forEach((x) => expect(Number.isFinite(x)).toBe(true))));
  });

  it('gradient w.r.t. logitsP matches float64 central differences; zero on pads', () => {
    const rng = new Rng(13);
    const [bb, tt, vv] = [2, 3, 5];
    const m = [[1, 1, 1], [1, 1, 0]];
    const p = randomLogits(rng, bb, tt, vv, 4);
    const q = randomLogits(rng, bb, tt, vv, 4);
    // A weighted sum, so each position's gradient is scaled differently.
    const w = [[0.5, -1.3, 2], [1.1, 0.7, 3]];
    const objective = (pp: number[][][]) => {
      let total = 0;
      for (let r = 0; r < bb; r++) for (let s = 0; s < tt; s++) if (m[r][s]) total += w[r][s] * klRef(pp[r][s], q[r][s]);
      return total;
    };
    const tq = tf.tensor3d(q);
    const tm = tf.tensor2d(m);
    const tw = tf.tensor2d(w);
    const grad = tf.grad((x: tf.Tensor) => tf.sum(tf.mul(perTokenKL(x as tf.Tensor3D, tq, tm), tw)))(tf.tensor3d(p)).arraySync() as number[][][];
    const eps = 1e-6;
    for (let r = 0; r < bb; r++) for (let s = 0; s < tt; s++) for (let j = 0; j < vv; j++) {
      const plus = p.map((a) => a.map((c) => c.slice()));
      const minus = p.map((a) => a.map((c) => c.slice()));
      plus[r][s][j] += eps;
      minus[r][s][j] -= eps;
      const fd = (objective(plus) - objective(minus)) / (2 * eps);
      if (!m[r][s]) expect(grad[r][s][j]).toBe(0);
      expect(Math.abs(grad[r][s][j] - fd)).toBeLessThan(1e-5 + 1e-4 * Math.abs(fd));
    }
    // The gradient also flows to logitsQ.
    const gq = tf.grad((x: tf.Tensor) => tf.sum(perTokenKL(tf.tensor3d(p), x as tf.Tensor3D, tm)))(tq).arraySync() as number[][][];
    expect(gq[0][0].some((x) => Math.abs(x) > 1e-3)).toBe(true);
  });

  it('rejects mismatched shapes', () => {
    const a = tf.zeros([2, 3, 4]) as tf.Tensor3D;
    expect(() => perTokenKL(a, tf.zeros([2, 3, 5]) as tf.Tensor3D, tf.ones([2, 3]) as tf.Tensor2D)).toThrow(/logitsQ/);
    expect(() => perTokenKL(a, a, tf.ones([2, 4]) as tf.Tensor2D)).toThrow(/attentionMask/);
  });
});
