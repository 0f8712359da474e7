// Every runtime kernel fix against the stock cpu kernel: random shapes, values and gradients.
import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine, restoreStockKernel, overrideKernel, tf } from '../../lib/engine/index.js';
import { batchMatMulWasmConfig } from '../../lib/engine/kernels/wasmBatchMatMul.js';
import { nativeMatMulCpuConfig, nativeMatMulWasmConfig } from '../../lib/engine/kernels/nativeMatMul.js';
import { loadNative } from '../../lib/engine/native.js';
import { onBackend, onStockCpu, randomArray, randomInt, relativeError, rng } from './helpers.js';

const TOL = 1e-5;

beforeAll(async () => {
  await initEngine({ backend: 'wasm' }); // registers the wasm fixes, the cpu fix and the BatchMatMul gradient fix
});

describe('UnsortedSegmentSum', () => {
  const rand = rng(1234);
  const cases = Array.from({ length: 6 }, (_, i) => {
    // At least 2 ids, so that every case has a kept row and a dropped one.
    const idsShape: number[] = i % 2 === 0 ? [randomInt(rand, 2, 40)] : [randomInt(rand, 2, 5), randomInt(rand, 1, 7)];
    const inner: number[] = i === 5 ? [] : [randomInt(rand, 1, 6), randomInt(rand, 1, 9)].slice(0, 1 + (i % 2));
    const numSegments = randomInt(rand, 1, 30);
    const nIds = idsShape.reduce((a, b) => a * b, 1);
    // Some ids fall outside [0, numSegments): TensorFlow drops those rows. One random position is
    // forced in range and another out of range (negative or too large), so no case is all-dropped.
    const ids = Int32Array.from({ length: nIds }, () => randomInt(rand, -2, numSegments + 1));
    const kept = randomInt(rand, 0, nIds - 1);
    const dropped = (kept + randomInt(rand, 1, nIds - 1)) % nIds;
    ids[kept] = randomInt(rand, 0, numSegments - 1);
    ids[dropped] = rand() < 0.5 ? -1 : numSegments;
    const x = randomArray(rand, nIds * inner.reduce((a, b) => a * b, 1));
    return { idsShape, inner, numSegments, ids, x };
  });

  /** TensorFlow's definition, written out: out[ids[i]] += x[i] over the flattened leading axes. */
  function reference(c: (typeof cases)[number]): Float32Array {
    const inner = c.inner.reduce((a, b) => a * b, 1);
    const out = new Float32Array(c.numSegments * inner);
    c.ids.forEach((id, row) => {
      if (id < 0 || id >= c.numSegments) return;
      for (let j = 0; j < inner; j++) out[id * inner + j] += c.x[row * inner + j];
    });
    return out;
  }

  it.each(cases.map((c, i) => [i, c] as const))('case %i matches the definition on cpu and wasm, and the stock kernel for 1-D ids', async (_, c) => {
    const f = () => tf.unsortedSegmentSum(tf.tensor(c.x, [...c.idsShape, ...c.inner]), tf.tensor<tf.Rank>(c.ids, c.idsShape, 'int32') as tf.Tensor1D, c.numSegments);
    const want = reference(c);
    // The case must test something: some row summed, some row dropped.
    expect(want.some((v) => v !== 0)).toBe(true);
    expect(Array.from(c.ids).some((id) => id < 0 || id >= c.numSegments)).toBe(true);
    const [cpu] = await onBackend('cpu', f);
    const [wasm] = await onBackend('wasm', f);
    expect(relativeError(cpu, want)).toBeLessThan(TOL);
    expect(relativeError(wasm, want)).toBeLessThan(TOL);
    // The stock cpu kernel mis-shapes multi-dimensional ids (it multiplies the output by their
    // trailing sizes), so it is a reference only for the 1-D ids that tfjs's own gradients pass.
    if (c.idsShape.length === 1) {
      const [stock] = await onStockCpu(f);
      expect(relativeError(cpu, stock)).toBeLessThan(TOL);
    }
  });

  it('sums int32 values exactly', async () => {
    const f = () => tf.unsortedSegmentSum(tf.tensor([[1, 2], [3, 4], [5, 6]], [3, 2], 'int32'), tf.tensor([1, 0, 1], [3], 'int32'), 3);
    for (const backend of ['cpu', 'wasm']) {
      await tf.setBackend(backend);
      const out = f();
      expect(out.dtype).toBe('int32');
      expect(Array.from(out.dataSync())).toEqual([3, 4, 6, 8, 0, 0]);
      out.dispose();
    }
  });

  it('gives GatherV2 the same gradient as the stock kernel (embedding backward)', async () => {
    const r = rng(99);
    const vocab = 37, dim = 8, b = 4, t = 11;
    const table = randomArray(r, vocab * dim);
    const ids = Int32Array.from({ length: b * t }, () => randomInt(r, 0, vocab - 1));
    const upstream = randomArray(r, b * t * dim);
    const f = () => tf.grad((w: tf.Tensor) => tf.sum(tf.mul(tf.gather(w, tf.tensor(ids, [b, t], 'int32')), tf.tensor(upstream, [b, t, dim]))))(tf.tensor(table, [vocab, dim]));
    const [want] = await onStockCpu(f);
    const [cpu] = await onBackend('cpu', f);
    const [wasm] = await onBackend('wasm', f);
    expect(relativeError(cpu, want)).toBeLessThan(TOL);
    expect(relativeError(wasm, want)).toBeLessThan(TOL);
  });

  it('rejects segment ids that are not a prefix of x', async () => {
    await tf.setBackend('wasm');
    expect(() => tf.unsortedSegmentSum(tf.zeros([3, 2]), tf.tensor([0, 1], [2], 'int32'), 2)).toThrow(/prefix/);
  });
});

const native = loadNative().addon;
// Each BatchMatMul replacement, installed in turn; the reference is always the stock cpu kernel.
const matMulImpls = [
  { name: 'wasm, XNNPACK path', backend: 'wasm', install: () => overrideKernel(batchMatMulWasmConfig), available: true },
  { name: 'wasm, native GEMM', backend: 'wasm', install: () => overrideKernel(nativeMatMulWasmConfig(native!)), available: native !== null },
  { name: 'cpu, native GEMM', backend: 'cpu', install: () => overrideKernel(nativeMatMulCpuConfig(native!)), available: native !== null },
];

describe.each(matMulImpls)('BatchMatMul ($name)', (impl) => {
  const onImpl = async <T>(f: () => T) => {
    impl.install();
    try {
      return await f();
    } finally {
      restoreStockKernel(tf.BatchMatMul, 'cpu');
      overrideKernel(batchMatMulWasmConfig);
    }
  };

  const rand = rng(7);
  type Case = { aShape: number[]; bShape: number[]; ta: boolean; tb: boolean };
  const cases: Case[] = [];
  for (const ta of [false, true]) {
    for (const tb of [false, true]) {
      for (const outer of [[[], []], [[3], [3]], [[4], []], [[], [2]], [[2, 1], [3]], [[1, 3], [2, 1]], [[2, 3], [2, 3]]] as number[][][]) {
        const m = randomInt(rand, 1, 9), k = randomInt(rand, 1, 13), n = randomInt(rand, 1, 10);
        cases.push({
          aShape: [...outer[0], ...(ta ? [k, m] : [m, k])],
          bShape: [...outer[1], ...(tb ? [n, k] : [k, n])],
          ta, tb,
        });
      }
    }
  }
  // Model-sized shapes: a [B*T, D] x W^T projection, its weight gradient, and attention products.
  cases.push({ aShape: [64, 128], bShape: [96, 128], ta: false, tb: true });
  cases.push({ aShape: [64, 128], bShape: [64, 96], ta: true, tb: false });
  cases.push({ aShape: [2, 4, 16, 32], bShape: [2, 4, 16, 32], ta: false, tb: true });
  cases.push({ aShape: [2, 4, 16, 16], bShape: [2, 4, 16, 32], ta: false, tb: false });

  const label = (c: Case) => `[${c.aShape}]${c.ta ? 'ᵀ' : ''} x [${c.bShape}]${c.tb ? 'ᵀ' : ''}`;

  const broadcasts = (c: Case) => c.aShape.slice(0, -2).join() !== c.bShape.slice(0, -2).join();

  /**
   * The definition in float64 with numpy broadcasting over the batch axes: the product, and the
   * gradients for upstream gradient w, da = w op(B)ᵀ and db = op(A)ᵀ w, each summed over the batch
   * axes its operand was broadcast along (which is what the gradient of a broadcast must do).
   */
  function reference(c: Case, a: Float32Array, b: Float32Array, w: Float32Array): { y: Float64Array; da: Float64Array; db: Float64Array } {
    const [aR, bR] = [c.aShape.length, c.bShape.length];
    const m = c.ta ? c.aShape[aR - 1] : c.aShape[aR - 2];
    const k = c.ta ? c.aShape[aR - 2] : c.aShape[aR - 1];
    const n = c.tb ? c.bShape[bR - 2] : c.bShape[bR - 1];
    const rank = Math.max(aR, bR) - 2;
    const pad = (s: number[]) => [...Array(rank - (s.length - 2)).fill(1), ...s.slice(0, -2)];
    const [aO, bO] = [pad(c.aShape), pad(c.bShape)];
    const outer = aO.map((d, i) => Math.max(d, bO[i]));
    const batches = outer.reduce((x, y) => x * y, 1);
    const y = new Float64Array(batches * m * n);
    const da = new Float64Array(a.length);
    const db = new Float64Array(b.length);
    for (let o = 0; o < batches; o++) {
      let rest = o, ai = 0, bi = 0, as = 1, bs = 1;
      for (let d = rank - 1; d >= 0; d--) {
        const coord = rest % outer[d];
        rest = Math.floor(rest / outer[d]);
        if (aO[d] !== 1) ai += coord * as;
        if (bO[d] !== 1) bi += coord * bs;
        as *= aO[d];
        bs *= bO[d];
      }
      const aAt = (i: number, p: number) => ai * m * k + (c.ta ? p * m + i : i * k + p);
      const bAt = (p: number, j: number) => bi * k * n + (c.tb ? j * k + p : p * n + j);
      for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
        let sum = 0;
        const wij = w[o * m * n + i * n + j];
        for (let p = 0; p < k; p++) {
          sum += a[aAt(i, p)] * b[bAt(p, j)];
          da[aAt(i, p)] += wij * b[bAt(p, j)];
          db[bAt(p, j)] += wij * a[aAt(i, p)];
        }
        y[o * m * n + i * n + j] = sum;
      }
    }
    return { y, da, db };
  }

  it.skipIf(!impl.available).each(cases.map((c) => [label(c), c] as const))('%s: values and gradients match the definition, and the stock cpu kernel', async (_, c) => {
    const a = randomArray(rand, c.aShape.reduce((x, y) => x * y, 1));
    const b = randomArray(rand, c.bShape.reduce((x, y) => x * y, 1));
    const outShape = tf.broadcast_util.assertAndGetBroadcastShape(c.aShape.slice(0, -2), c.bShape.slice(0, -2));
    const [m, n] = [c.ta ? c.aShape.at(-1)! : c.aShape.at(-2)!, c.tb ? c.bShape.at(-2)! : c.bShape.at(-1)!];
    // A fixed non-uniform upstream gradient, so every output element's gradient path is checked.
    const w = Float32Array.from({ length: outShape.reduce((x, y) => x * y, 1) * m * n }, (_, i) => Math.sin(i));
    const f = (withGrads: boolean) => () => {
      const at = tf.tensor(a, c.aShape), bt = tf.tensor(b, c.bShape);
      const y = tf.matMul(at, bt, c.ta, c.tb);
      if (!withGrads) return [y];
      const wt = tf.tensor(w, y.shape);
      const [da, db] = tf.grads((p: tf.Tensor, q: tf.Tensor) => tf.sum(tf.mul(tf.matMul(p, q, c.ta, c.tb), wt)))([at, bt]);
      return [y, da, db];
    };
    // tfjs's own BatchMatMul gradient returns the broadcast shape for a broadcast operand (tf.grad
    // then throws); lib/engine registers one that sums over the broadcast axes. So the stock run
    // vouches for gradients only where the batch axes agree, and the float64 definition for all.
    const want = await onStockCpu(f(!broadcasts(c)));
    const before = tf.memory().numTensors;
    const got = await onImpl(() => onBackend(impl.backend, f(true)));
    expect(tf.memory().numTensors).toBe(before);
    expect(got.length).toBe(3);
    const ref = reference(c, a, b, w);
    expect(relativeError(got[0], ref.y), 'product').toBeLessThan(TOL);
    expect(relativeError(got[1], ref.da), 'da').toBeLessThan(TOL);
    expect(relativeError(got[2], ref.db), 'db').toBeLessThan(TOL);
    // The stock cpu kernel handles broadcasting only when one side's batch is 1 or both agree.
    if (want[0].length === got[0].length) expect(relativeError(got[0], want[0])).toBeLessThan(TOL);
    for (let i = 1; i < want.length; i++) expect(relativeError(got[i], want[i])).toBeLessThan(TOL);
  });

  it.skipIf(!impl.available)('leaves no backend allocations behind', async () => onImpl(async () => {
    await tf.setBackend(impl.backend);
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const x = tf.randomNormal([3, 5, 7]), y = tf.randomNormal([3, 9, 7]);
    tf.matMul(x, y, false, true).dispose();
    const ids = backend.numDataIds();
    for (let i = 0; i < 3; i++) tf.matMul(x, y, false, true).dispose();
    expect(backend.numDataIds()).toBe(ids);
    tf.dispose([x, y]);
  }));

  it.skipIf(!impl.available)('names the shapes when inner dimensions disagree', async () => onImpl(async () => {
    await tf.setBackend(impl.backend);
    expect(() => tf.matMul(tf.zeros([2, 3]), tf.zeros([4, 5]))).toThrow(/inner/);
  }));
});

describe('comparisons and Identity (wasm)', () => {
  const rand = rng(31);
  const shapes: [number[], number[]][] = [
    [[4, 6, 9], [4, 6, 1]], [[4, 6, 9], [9]], [[1], [3, 5]], [[2, 1, 5], [1, 3, 1]], [[7], [7]], [[], [3, 2]], [[3, 1], []],
  ];
  const ops: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [
    ['equal', tf.equal], ['notEqual', tf.notEqual], ['less', tf.less], ['lessEqual', tf.lessEqual], ['greater', tf.greater], ['greaterEqual', tf.greaterEqual],
  ];
  it.each(ops)('%s matches the stock cpu kernel on broadcast shapes, with ties', async (_, op) => {
    for (const [aShape, bShape] of shapes) {
      // Values from a small set so that ties (the interesting case for equal/lessEqual) happen often.
      const pick = (n: number) => Float32Array.from({ length: n }, () => randomInt(rand, -2, 2) / 2);
      const a = pick(aShape.reduce((x, y) => x * y, 1));
      const b = pick(bShape.reduce((x, y) => x * y, 1));
      const f = () => tf.cast(op(tf.tensor(a, aShape), tf.tensor(b, bShape)), 'float32');
      const [want] = await onBackend('cpu', f);
      const [got] = await onBackend('wasm', f);
      expect(Array.from(got)).toEqual(Array.from(want));
    }
  });

  it('compares int32 tensors too', async () => {
    await tf.setBackend('wasm');
    const out = tf.equal(tf.tensor([[1, 2], [3, 4]], [2, 2], 'int32'), tf.tensor([2], [1], 'int32'));
    expect(out.dtype).toBe('bool');
    expect(Array.from(out.dataSync())).toEqual([0, 1, 0, 0]);
    out.dispose();
  });

  it('Identity shares data and stays correct after the source is disposed', async () => {
    await tf.setBackend('wasm');
    const backend = tf.backend() as unknown as { numDataIds(): number };
    const x = tf.tensor([1, 2, 3]);
    const ids = backend.numDataIds();
    const y = tf.clone(x); // runs the Identity kernel
    expect(backend.numDataIds()).toBe(ids); // no new allocation
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3]);
    y.dispose();
    expect(backend.numDataIds()).toBe(ids - 1);
  });

  it('a variable assigned after being cloned keeps the clone unchanged', async () => {
    await tf.setBackend('wasm');
    const v = tf.variable(tf.tensor([1, 2]));
    const snapshot = tf.clone(v);
    v.assign(tf.tensor([5, 6]));
    expect(Array.from(snapshot.dataSync())).toEqual([1, 2]);
    expect(Array.from(v.dataSync())).toEqual([5, 6]);
    tf.dispose([v, snapshot]);
  });
});

describe('GatherV2 (wasm) against the stock cpu kernels', () => {
  const rand = rng(5);
  const cases: { xShape: number[]; idsShape: number[]; axis: number; batchDims?: number; dtype?: 'float32' | 'int32' }[] = [
    { xShape: [37, 8], idsShape: [4, 11], axis: 0 },
    { xShape: [3, 9, 5], idsShape: [7], axis: 1 },
    { xShape: [4, 6], idsShape: [2, 3], axis: -1 },
    { xShape: [10], idsShape: [5], axis: 0, dtype: 'int32' },
    { xShape: [2, 5, 3], idsShape: [2, 4], axis: 1, batchDims: 1 },
  ];
  it.each(cases.map((c) => [JSON.stringify(c), c] as const))('%s matches cpu, values and gradient', async (_, c) => {
    const size = c.xShape.reduce((a, b) => a * b, 1);
    const x = randomArray(rand, size, 3);
    const axisDim = c.xShape[c.axis < 0 ? c.xShape.length + c.axis : c.axis];
    const ids = Int32Array.from({ length: c.idsShape.reduce((a, b) => a * b, 1) }, () => randomInt(rand, 0, axisDim - 1));
    const f = () => {
      const xt = tf.tensor(c.dtype === 'int32' ? Int32Array.from(x, Math.round) : x, c.xShape, c.dtype ?? 'float32');
      const it = tf.tensor(ids, c.idsShape, 'int32');
      const y = tf.cast(tf.gather(xt, it, c.axis, c.batchDims ?? 0), 'float32');
      if (c.dtype === 'int32') return [y];
      const g = tf.grad((p: tf.Tensor) => tf.sum(tf.mul(tf.gather(p, it, c.axis, c.batchDims ?? 0), tf.sin(tf.reshape(tf.range(0, y.size), y.shape)))))(xt);
      return [y, g];
    };
    // The reference's gradient runs tfjs's own cpu UnsortedSegmentSum, not the kit's.
    const want = await onStockCpu(f);
    const got = await onBackend('wasm', f);
    expect(got.length).toBe(want.length);
    for (let i = 0; i < got.length; i++) expect(relativeError(got[i], want[i])).toBeLessThan(TOL);
  });

  it('names an out-of-range index', async () => {
    await tf.setBackend('wasm');
    expect(() => tf.gather(tf.zeros([3, 2]), tf.tensor([0, 3], [2], 'int32'))).toThrow(/index value 3 is not in \[0, 2\]/);
  });
});
