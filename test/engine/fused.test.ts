// Fused ops against their plain-op compositions (lib/model's math), values and gradients: first
// on the same backend (cpu, wasm), then each kit backend against the composition on the *stock*
// cpu backend over random shapes, so that no kit kernel sits on both sides of a comparison.
import { beforeAll, describe, expect, it } from 'vitest';
import { ADAMW_KERNEL, adamwReference, adamwUpdate, CE_GRAD_KERNEL, CE_KERNEL, crossEntropy, fusedAttention, initEngine, loadNative, overrideKernel, restoreStockKernel, rmsNorm, rope, ROPE_KERNEL, ropeReference, swiglu, tf } from '../../lib/engine/index.js';
import { adamwWasmConfig, adamwWasmNativeConfig, crossEntropyConfigs, crossEntropyWasmNativeConfigs } from '../../lib/engine/fused.js';
import { batchMatMulWasmConfig } from '../../lib/engine/kernels/wasmBatchMatMul.js';
import { nativeMatMulCpuConfig, nativeMatMulWasmConfig } from '../../lib/engine/kernels/nativeMatMul.js';
import { onBackend, onStockCpu, randomArray, randomInt, relativeError, rng } from './helpers.js';

const TOL = 1e-5;
const BACKENDS = ['cpu', 'wasm'];

beforeAll(async () => {
  await initEngine({ backend: 'wasm' });
});

/** lib/model's eager attention: repeat K/V per query head, scores, softcap, mask, softmax. */
function plainAttention(q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, mask: tf.Tensor | undefined, scale: number, softcap?: number) {
  const [B, H, , dh] = q.shape;
  const [, Hkv, Tk] = k.shape;
  const rep = (t: tf.Tensor) => tf.reshape(tf.tile(tf.reshape(t, [B * Hkv, 1, Tk * dh]), [1, H / Hkv, 1]), [B, H, Tk, dh]);
  let s = tf.mul(tf.matMul(q, rep(k), false, true), scale);
  if (softcap !== undefined) s = tf.mul(tf.tanh(tf.div(s, softcap)), softcap);
  if (mask) s = tf.add(s, mask);
  const p = tf.softmax(s, -1);
  return { output: tf.matMul(p, rep(v)), probs: p };
}

/** Compares f and g (values and gradients w.r.t. `inputs`) under a fixed non-uniform upstream gradient. */
async function compare(
  backend: string,
  inputs: { data: Float32Array; shape: number[] }[],
  fused: (...xs: tf.Tensor[]) => tf.Tensor,
  plain: (...xs: tf.Tensor[]) => tf.Tensor,
  tol = TOL,
) {
  const run = (f: (...xs: tf.Tensor[]) => tf.Tensor) => () => {
    const xs = inputs.map((i) => tf.tensor(i.data, i.shape));
    const y = f(...xs);
    const w = tf.cos(tf.reshape(tf.range(0, y.size), y.shape));
    const grads = tf.grads((...ps: tf.Tensor[]) => tf.sum(tf.mul(f(...ps), w)))(xs);
    return [y, ...grads];
  };
  const want = await onBackend(backend, run(plain));
  const before = tf.memory().numTensors;
  const got = await onBackend(backend, run(fused));
  expect(tf.memory().numTensors).toBe(before);
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++) expect(relativeError(got[i], want[i]), `output ${i}`).toBeLessThan(tol);
}

describe.each(BACKENDS)('fused ops on %s', (backend) => {
  const rand = rng(backend === 'cpu' ? 11 : 12);

  it.each([0, 1] as const)('rmsNorm (offset %i) matches x * rsqrt(mean(x^2) + eps) * (w + offset)', async (offset) => {
    const [n, d] = [6, 24];
    const plain = (x: tf.Tensor, w: tf.Tensor) => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-6))), offset ? tf.add(w, 1) : w);
    await compare(backend, [{ data: randomArray(rand, 2 * n * d, 2), shape: [2, n, d] }, { data: randomArray(rand, d), shape: [d] }],
      (x, w) => rmsNorm(x, w, 1e-6, { offset }), plain);
  });

  it('swiglu matches silu(gate) * up', async () => {
    const shape = [5, 7, 11];
    const size = 5 * 7 * 11;
    await compare(backend, [{ data: randomArray(rand, size, 4), shape }, { data: randomArray(rand, size), shape }],
      swiglu, (g, u) => tf.mul(tf.mul(g, tf.sigmoid(g)), u));
  });

  it('swiglu names mismatched shapes', () => {
    expect(() => swiglu(tf.zeros([2, 3]), tf.zeros([3, 2]))).toThrow(/same shape/);
  });

  for (const tableBatch of [1, 2]) {
    for (const rank of [3, 4]) {
      it(`rope matches rotate_half with cos/sin of batch ${tableBatch}, rank ${rank}`, async () => {
        const [B, T, H, dh] = [2, 5, 3, 8];
        const tableShape = rank === 4 ? [tableBatch, T, 1, dh / 2] : [tableBatch, T, dh / 2];
        const angles = randomArray(rand, tableBatch * T * dh / 2, 3);
        const cos = tf.tensor(angles.map(Math.cos), tableShape);
        const sin = tf.tensor(angles.map(Math.sin), tableShape);
        await compare(backend, [{ data: randomArray(rand, B * T * H * dh), shape: [B, T, H, dh] }],
          (x) => rope(x, cos, sin), (x) => ropeReference(x, cos, sin));
        tf.dispose([cos, sin]);
      });
    }
  }

  it('rope keeps its tables for backprop when the caller disposes them after the forward pass', async () => {
    await tf.setBackend(backend);
    const x = tf.randomNormal([1, 3, 2, 4], 0, 1, 'float32', 1);
    const g = tf.grad((xx: tf.Tensor) => {
      // as in a model: the tables are intermediates of a tidy that returns only the output
      const y = tf.tidy(() => {
        const ang = tf.reshape(tf.range(0, 6), [1, 3, 1, 2]);
        return rope(xx, tf.cos(ang), tf.sin(ang));
      });
      return tf.sum(tf.mul(y, y));
    })(x);
    // |rope(x)|^2 = |x|^2 (a rotation), so the gradient is 2x
    expect(relativeError(g.dataSync(), tf.mul(x, 2).dataSync())).toBeLessThan(TOL);
    tf.dispose([x, g]);
  });

  it('rope names bad table shapes', () => {
    expect(() => rope(tf.zeros([1, 4, 2, 8]), tf.zeros([1, 3, 1, 4]), tf.zeros([1, 3, 1, 4]))).toThrow(/cos\/sin/);
  });

  for (const [label, Hkv, softcap, maskKind] of [
    ['MHA, causal mask', 4, undefined, 'causal'],
    ['GQA 4:2, causal mask, softcap 5', 2, 5, 'causal'],
    ['GQA 4:1, per-row padding mask', 1, undefined, 'padding'],
    ['GQA 4:2, no mask (decode)', 2, undefined, 'none'],
  ] as const) {
    it(`fusedAttention matches eager attention: ${label}`, async () => {
      const [B, H, Tq, Tk, dh] = [2, 4, maskKind === 'none' ? 1 : 6, 6, 8];
      const scale = dh ** -0.5;
      let mask: tf.Tensor | undefined;
      if (maskKind === 'causal') {
        mask = tf.tensor(Float32Array.from({ length: Tq * Tk }, (_, i) => (i % Tk > Math.floor(i / Tk) ? -1e9 : 0)), [1, 1, Tq, Tk]);
      } else if (maskKind === 'padding') {
        mask = tf.tensor(Float32Array.from({ length: B * Tk }, (_, i) => (i === 0 || i === Tk + 1 ? -1e9 : 0)), [B, 1, 1, Tk]);
      }
      const inputs = [
        { data: randomArray(rand, B * H * Tq * dh, 2), shape: [B, H, Tq, dh] },
        { data: randomArray(rand, B * Hkv * Tk * dh, 2), shape: [B, Hkv, Tk, dh] },
        { data: randomArray(rand, B * Hkv * Tk * dh), shape: [B, Hkv, Tk, dh] },
      ];
      await compare(backend, inputs,
        (q, k, v) => fusedAttention(q, k, v, mask, { scale, softcap }).output,
        (q, k, v) => plainAttention(q, k, v, mask, scale, softcap).output);
      // probs, and the mask's gradient when a mask is given
      const [want] = await onBackend(backend, () => plainAttention(...inputs.map((i) => tf.tensor(i.data, i.shape)) as [tf.Tensor, tf.Tensor, tf.Tensor], mask, scale, softcap).probs);
      const [got] = await onBackend(backend, () => fusedAttention(...inputs.map((i) => tf.tensor(i.data, i.shape)) as [tf.Tensor, tf.Tensor, tf.Tensor], mask, { scale, softcap }).probs);
      expect(relativeError(got, want)).toBeLessThan(TOL);
      if (mask) {
        const maskGrad = (att: typeof plainAttention | 'fused') => () => {
          const [q, k, v] = inputs.map((i) => tf.tensor(i.data, i.shape));
          return tf.grad((m: tf.Tensor) => tf.sum(tf.mul(att === 'fused' ? fusedAttention(q, k, v, m, { scale, softcap }).output : att(q, k, v, m, scale, softcap).output, tf.cos(tf.reshape(tf.range(0, B * H * Tq * dh), [B, H, Tq, dh])))))(mask!);
        };
        const [wantM] = await onBackend(backend, maskGrad(plainAttention));
        const [gotM] = await onBackend(backend, maskGrad('fused'));
        expect(relativeError(gotM, wantM)).toBeLessThan(TOL);
      }
      mask?.dispose();
    });
  }

  it('crossEntropy matches logSumExp(logits) - logits[target] (lib/objectives\' composition), values and gradients', async () => {
    const [B, T, V] = [3, 5, 17];
    const ids = Int32Array.from({ length: B * T }, () => Math.floor(rand() * V));
    const targets = tf.tensor(ids, [B, T], 'int32');
    await compare(backend, [{ data: randomArray(rand, B * T * V, 6), shape: [B, T, V] }],
      (l) => crossEntropy(l, targets),
      (l) => tf.sub(tf.logSumExp(l, -1), tf.sum(tf.mul(l, tf.oneHot(targets, V)), -1)));
    targets.dispose();
  });

  it('crossEntropy without the one-pass kernels (plain-op fallback of other backends) agrees too', async () => {
    const [N, V] = [6, 9];
    const targets = tf.tensor(Int32Array.from({ length: N }, (_, i) => (i * 5) % V), [N], 'int32');
    const removed = [CE_KERNEL, CE_GRAD_KERNEL].map((name) => {
      const config = tf.getKernel(name, backend);
      tf.unregisterKernel(name, backend);
      return config;
    });
    try {
      await compare(backend, [{ data: randomArray(rand, N * V, 6), shape: [N, V] }],
        (l) => crossEntropy(l, targets),
        (l) => tf.sub(tf.logSumExp(l, -1), tf.sum(tf.mul(l, tf.oneHot(targets, V)), -1)));
    } finally {
      removed.forEach((config) => tf.registerKernel(config));
      targets.dispose();
    }
  });

  it.skipIf(backend !== 'wasm' || loadNative().addon === null)('crossEntropy through the native kernels agrees too, and names a bad target', async () => {
    const [B, T, V] = [4, 7, 33];
    const targets = tf.tensor(Int32Array.from({ length: B * T }, () => Math.floor(rand() * V)), [B, T], 'int32');
    for (const config of crossEntropyWasmNativeConfigs(loadNative().addon!)) overrideKernel(config);
    try {
      await compare(backend, [{ data: randomArray(rand, B * T * V, 6), shape: [B, T, V] }],
        (l) => crossEntropy(l, targets),
        (l) => tf.sub(tf.logSumExp(l, -1), tf.sum(tf.mul(l, tf.oneHot(targets, V)), -1)));
      expect(() => crossEntropy(tf.zeros([2, 5]), tf.tensor([1, 7], [2], 'int32'))).toThrow(/target id 7 at position 1 is not in \[0, 4\]/);
    } finally {
      for (const config of crossEntropyConfigs.filter((c) => c.backendName === 'wasm')) overrideKernel(config);
      targets.dispose();
    }
  });

  it('crossEntropy names an out-of-range target', async () => {
    await tf.setBackend(backend);
    expect(() => crossEntropy(tf.zeros([2, 5]), tf.tensor([1, 5], [2], 'int32'))).toThrow(/target id 5 at position 1 is not in \[0, 4\]/);
  });

  it('crossEntropy names bad targets', () => {
    expect(() => crossEntropy(tf.zeros([2, 3, 5]), tf.zeros([2, 4], 'int32'))).toThrow(/without its last axis/);
    expect(() => crossEntropy(tf.zeros([2, 5]), tf.zeros([2]))).toThrow(/must be int32/);
  });

  it('fusedAttention names inconsistent shapes', () => {
    expect(() => fusedAttention(tf.zeros([1, 3, 2, 4]), tf.zeros([1, 2, 2, 4]), tf.zeros([1, 2, 2, 4]), undefined, { scale: 1 })).toThrow(/multiple of Hkv/);
  });
});

describe('adamwUpdate', () => {
  const rand = rng(77);
  const opts = [
    { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 1 },
    { lr: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-6, weightDecay: 0, step: 17 },
  ];
  it.each(opts.map((o, i) => [i, o] as const))('options %i: bit-identical to lib/train\'s composition on cpu, within 1e-5 on wasm', async (_, o) => {
    const shape = [13, 7];
    const [p, g, m] = [randomArray(rand, 91), randomArray(rand, 91, 0.1), randomArray(rand, 91, 0.01)];
    const v = Float32Array.from(randomArray(rand, 91, 0.001), Math.abs);
    const run = (fused: boolean) => () => {
      const t = [p, g, m, v].map((x) => tf.tensor(x, shape));
      const out = (fused ? adamwUpdate : adamwReference)(t[0], t[1], t[2], t[3], o);
      return [out.p, out.m, out.v];
    };
    for (const backend of BACKENDS) {
      const want = await onBackend(backend, run(false));
      const got = await onBackend(backend, run(true));
      for (let i = 0; i < 3; i++) {
        if (backend === 'cpu') expect(Array.from(got[i])).toEqual(Array.from(want[i]));
        else expect(relativeError(got[i], want[i])).toBeLessThan(TOL);
      }
    }
  });

  it.skipIf(loadNative().addon === null)('the native wasm kernel is bit-identical to the composition on wasm', async () => {
    const shape = [300, 7];
    const [p, g, m] = [randomArray(rand, 2100), randomArray(rand, 2100, 0.1), randomArray(rand, 2100, 0.01)];
    const v = Float32Array.from(randomArray(rand, 2100, 0.001), Math.abs);
    overrideKernel(adamwWasmNativeConfig(loadNative().addon!));
    try {
      for (const o of opts) {
        const run = (fused: boolean) => () => {
          const t = [p, g, m, v].map((x) => tf.tensor(x, shape));
          const out = (fused ? adamwUpdate : adamwReference)(t[0], t[1], t[2], t[3], o);
          return [out.p, out.m, out.v];
        };
        const want = await onBackend('wasm', run(false));
        const got = await onBackend('wasm', run(true));
        for (let i = 0; i < 3; i++) expect(Array.from(got[i])).toEqual(Array.from(want[i]));
      }
    } finally {
      overrideKernel(adamwWasmConfig);
    }
  });

  it('names mismatched shapes and a bad step', () => {
    const z = tf.zeros([2]);
    expect(() => adamwUpdate(z, tf.zeros([3]), z, z, { ...opts[0] })).toThrow(/one shape/);
    expect(() => adamwUpdate(z, z, z, z, { ...opts[0], step: 0 })).toThrow(/`step` must be an integer >= 1/);
  });
});

// ---------------------------------------------------------------------------------------------
// Each kit backend against the composition on the stock cpu backend, on random shapes.

const native = loadNative().addon;

/** The wasm backend's kernels as initEngine({ backend: 'wasm' }) leaves them (beforeAll). */
function installWasmKernels() {
  overrideKernel(batchMatMulWasmConfig);
  overrideKernel(adamwWasmConfig);
  for (const config of crossEntropyConfigs.filter((c) => c.backendName === 'wasm')) overrideKernel(config);
}

/** Each backend the kit runs on, with the kernels initEngine installs for it. */
const KIT_BACKENDS = [
  {
    name: 'native', tfBackend: 'wasm', available: native !== null,
    install: () => {
      overrideKernel(nativeMatMulWasmConfig(native!));
      overrideKernel(adamwWasmNativeConfig(native!));
      for (const config of crossEntropyWasmNativeConfigs(native!)) overrideKernel(config);
    },
    uninstall: installWasmKernels,
  },
  { name: 'wasm', tfBackend: 'wasm', available: true, install: installWasmKernels, uninstall: () => {} },
  {
    // the cpu backend with the kit's UnsortedSegmentSum fix, the fused kernels and (when built) the native GEMM
    name: 'cpu', tfBackend: 'cpu', available: true,
    install: () => { if (native !== null) overrideKernel(nativeMatMulCpuConfig(native)); },
    uninstall: () => restoreStockKernel(tf.BatchMatMul, 'cpu'),
  },
];

type Spec = { data: Float32Array | Int32Array; shape: number[]; dtype?: 'float32' | 'int32' };
type OpResult = { out: tf.Tensor; extras?: tf.Tensor[] };

/**
 * Runs `op` (fused) on the kit backend and `plain` on the stock cpu backend: the output, any
 * extra outputs, and the gradients of sum(output * w) with respect to every `inputs` entry
 * (`consts` carry no gradient). w is a fixed non-uniform float32 upstream gradient.
 */
async function compareWithStock(
  kit: (typeof KIT_BACKENDS)[number], inputs: Spec[], consts: Spec[],
  op: (xs: tf.Tensor[], cs: tf.Tensor[]) => OpResult, plain: (xs: tf.Tensor[], cs: tf.Tensor[]) => OpResult,
) {
  const run = (f: typeof op) => () => {
    const make = (s: Spec) => tf.tensor(s.data, s.shape, s.dtype ?? 'float32');
    const xs = inputs.map(make);
    const cs = consts.map(make);
    const { out, extras = [] } = f(xs, cs);
    const w = tf.tensor(Float32Array.from({ length: out.size }, (_, i) => Math.cos(i)), out.shape);
    const grads = tf.grads((...ps: tf.Tensor[]) => tf.sum(tf.mul(f(ps, cs).out, w)))(xs);
    return [out, ...extras, ...grads];
  };
  const want = await onStockCpu(run(plain));
  const before = tf.memory().numTensors;
  kit.install();
  let got: Float32Array[];
  try {
    got = await onBackend(kit.tfBackend, run(op));
  } finally {
    kit.uninstall();
  }
  expect(tf.memory().numTensors).toBe(before);
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++) expect(relativeError(got[i], want[i]), `output ${i}`).toBeLessThan(TOL);
}

const sizeOf = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
/** 1 to 3 leading axes of odd-ish random sizes. */
const leadingShape = (rand: () => number) => Array.from({ length: randomInt(rand, 1, 3) }, () => randomInt(rand, 1, 7));

describe.each(KIT_BACKENDS)('fused ops on the kit backend $name against the composition on stock cpu', (kit) => {
  // One seed per backend: each draws its own shapes; each case has its own data generator, so a
  // filtered run (-t) sees the same data.
  const seed = 500 + KIT_BACKENDS.indexOf(kit);

  const rmsCases = (() => {
    const rand = rng(seed);
    return Array.from({ length: 4 }, (_, i) => ({ lead: leadingShape(rand), d: randomInt(rand, 1, 37), offset: (i % 2) as 0 | 1, eps: i < 2 ? 1e-6 : 1e-5, rand: rng(seed * 100 + i) }));
  })();
  it.skipIf(!kit.available).each(rmsCases.map((c) => [`[${c.lead},${c.d}] offset ${c.offset}`, c] as const))('rmsNorm %s', async (_, c) => {
    const x = { data: randomArray(c.rand, sizeOf(c.lead) * c.d, 2), shape: [...c.lead, c.d] };
    const w = { data: randomArray(c.rand, c.d), shape: [c.d] };
    await compareWithStock(kit, [x, w], [],
      ([xt, wt]) => ({ out: rmsNorm(xt, wt, c.eps, { offset: c.offset }) }),
      ([xt, wt]) => ({ out: tf.mul(tf.mul(xt, tf.rsqrt(tf.add(tf.mean(tf.square(xt), -1, true), c.eps))), c.offset ? tf.add(wt, 1) : wt) }));
  });

  const swigluCases = (() => {
    const rand = rng(seed + 10);
    return Array.from({ length: 4 }, (_, i) => ({ shape: [...leadingShape(rand), randomInt(rand, 1, 41)], rand: rng(seed * 100 + 10 + i) }));
  })();
  it.skipIf(!kit.available).each(swigluCases.map((c) => [`[${c.shape}]`, c] as const))('swiglu %s', async (_, c) => {
    const n = sizeOf(c.shape);
    await compareWithStock(kit, [{ data: randomArray(c.rand, n, 4), shape: c.shape }, { data: randomArray(c.rand, n), shape: c.shape }], [],
      ([g, u]) => ({ out: swiglu(g, u) }),
      ([g, u]) => ({ out: tf.mul(tf.mul(g, tf.sigmoid(g)), u) }));
  });

  const ropeCases = (() => {
    const rand = rng(seed + 20);
    return Array.from({ length: 4 }, (_, i) => {
      const [B, T, H, dh] = [randomInt(rand, 1, 3), randomInt(rand, 1, 7), randomInt(rand, 1, 5), 2 * randomInt(rand, 1, 9)];
      const tableBatch = i % 2 === 0 ? 1 : B;
      return { B, T, H, dh, tableShape: i < 2 ? [tableBatch, T, 1, dh / 2] : [tableBatch, T, dh / 2], rand: rng(seed * 100 + 20 + i) };
    });
  })();
  // On cpu and wasm rope runs the DeepalignRope kernel forward (sinSign 1) and backward (sinSign -1).
  it.skipIf(!kit.available).each(ropeCases.map((c) => [`x [${c.B},${c.T},${c.H},${c.dh}], tables [${c.tableShape}]`, c] as const))('rope (its kernel, forward and backward) %s', async (_, c) => {
    const angles = randomArray(c.rand, sizeOf(c.tableShape), 4);
    const tables = [{ data: angles.map(Math.cos), shape: c.tableShape }, { data: angles.map(Math.sin), shape: c.tableShape }];
    expect(tf.getKernel(ROPE_KERNEL, kit.tfBackend), 'rope would fall back to the composition').toBeDefined();
    await compareWithStock(kit, [{ data: randomArray(c.rand, c.B * c.T * c.H * c.dh), shape: [c.B, c.T, c.H, c.dh] }], tables,
      ([x], [cos, sin]) => ({ out: rope(x, cos, sin) }),
      ([x], [cos, sin]) => ({ out: ropeReference(x, cos, sin) }));
  });

  const attentionCases = (() => {
    const rand = rng(seed + 30);
    // Every mask kind once, GQA ratios 1 to 3, softcap on and off, odd sizes, a decoding step.
    const kinds = [
      { mask: 'causal', group: 2, softcap: 5 },
      { mask: 'padding', group: 3, softcap: undefined },
      { mask: 'causal+padding', group: 1, softcap: 7 },
      { mask: 'none', group: 2, softcap: undefined, decode: true },
      { mask: 'causal+padding', group: 4, softcap: undefined },
    ] as const;
    return kinds.map((kind, i) => {
      const B = randomInt(rand, 1, 3), Hkv = randomInt(rand, 1, 2), dh = randomInt(rand, 1, 9);
      const Tk = randomInt(rand, 2, 9);
      const Tq = 'decode' in kind ? 1 : randomInt(rand, 1, Tk);
      // Left padding of at most Tk - Tq keys, so the first query row still sees a key (a fully
      // masked row adds -1e9 to every score, and its softmax is rounding noise on any backend).
      const pads = Array.from({ length: B }, () => randomInt(rand, 0, Math.min(Tk - Tq, Tk - 1)));
      return { ...kind, B, H: Hkv * kind.group, Hkv, Tq, Tk, dh, pads, rand: rng(seed * 100 + 30 + i) };
    });
  })();
  it.skipIf(!kit.available).each(attentionCases.map((c) => [`B${c.B} H${c.H}/${c.Hkv} Tq${c.Tq} Tk${c.Tk} dh${c.dh}, mask ${c.mask}, softcap ${c.softcap ?? 'off'}`, c] as const))('fusedAttention %s: output, probs, and gradients for q, k, v and the mask', async (_, c) => {
    const { B, H, Hkv, Tq, Tk, dh } = c;
    const scale = dh ** -0.5;
    const offset = Tk - Tq; // query row i sits at position i + offset
    const causal = c.mask.startsWith('causal');
    const padded = c.mask.endsWith('padding');
    let mask: Spec | null = null;
    if (causal || padded) {
      // causal alone: [1, 1, Tq, Tk]; padding alone: [B, 1, 1, Tk]; both: [B, 1, Tq, Tk] (lib/model's shapes)
      const shape = [padded ? B : 1, 1, causal ? Tq : 1, Tk];
      const data = new Float32Array(sizeOf(shape));
      for (let b = 0; b < shape[0]; b++) for (let i = 0; i < shape[2]; i++) for (let j = 0; j < Tk; j++) {
        const hidden = (causal && j > i + offset) || (padded && j < c.pads[b]);
        data[(b * shape[2] + i) * Tk + j] = hidden ? -1e9 : 0;
      }
      mask = { data, shape };
    }
    const inputs: Spec[] = [
      { data: randomArray(c.rand, B * H * Tq * dh, 2), shape: [B, H, Tq, dh] },
      { data: randomArray(c.rand, B * Hkv * Tk * dh, 2), shape: [B, Hkv, Tk, dh] },
      { data: randomArray(c.rand, B * Hkv * Tk * dh), shape: [B, Hkv, Tk, dh] },
      ...(mask ? [mask] : []),
    ];
    await compareWithStock(kit, inputs, [],
      ([q, k, v, m]) => {
        const { output, probs } = fusedAttention(q, k, v, m, { scale, softcap: c.softcap });
        return { out: output, extras: [probs] };
      },
      ([q, k, v, m]) => {
        const { output, probs } = plainAttention(q, k, v, m, scale, c.softcap);
        return { out: output, extras: [probs] };
      });
  });

  const ceCases = (() => {
    const rand = rng(seed + 40);
    return Array.from({ length: 4 }, (_, i) => ({ lead: leadingShape(rand), V: randomInt(rand, 2, 45), rand: rng(seed * 100 + 40 + i) }));
  })();
  it.skipIf(!kit.available).each(ceCases.map((c) => [`logits [${c.lead},${c.V}]`, c] as const))('crossEntropy %s', async (_, c) => {
    const n = sizeOf(c.lead);
    const targets = { data: Int32Array.from({ length: n }, () => randomInt(c.rand, 0, c.V - 1)), shape: c.lead, dtype: 'int32' as const };
    expect([CE_KERNEL, CE_GRAD_KERNEL].map((k) => tf.getKernel(k, kit.tfBackend)), 'crossEntropy would fall back to plain ops').not.toContain(undefined);
    await compareWithStock(kit, [{ data: randomArray(c.rand, n * c.V, 6), shape: [...c.lead, c.V] }], [targets],
      ([l], [t]) => ({ out: crossEntropy(l, t) }),
      ([l], [t]) => ({ out: tf.sub(tf.logSumExp(l, -1), tf.sum(tf.mul(l, tf.oneHot(t, c.V)), -1)) }));
  });

  const adamwCases = (() => {
    const rand = rng(seed + 50);
    return Array.from({ length: 4 }, (_, i) => ({
      shape: [...leadingShape(rand), randomInt(rand, 1, 300)],
      opts: {
        lr: 10 ** -(2 + 2 * rand()), beta1: 0.8 + 0.19 * rand(), beta2: 0.9 + 0.0999 * rand(), eps: 10 ** -(5 + 4 * rand()),
        weightDecay: i % 2 === 0 ? 0.1 * rand() : 0, step: randomInt(rand, 1, 1000),
      },
      rand: rng(seed * 100 + 50 + i),
    }));
  })();
  // The update is written to round like lib/train's composition op by op, so it matches the stock
  // cpu composition bit for bit (the native loop included: same float32 operations, same order).
  it.skipIf(!kit.available).each(adamwCases.map((c) => [`[${c.shape}], step ${c.opts.step}, decay ${c.opts.weightDecay > 0}`, c] as const))('adamwUpdate %s: bit-identical', async (_, c) => {
    const n = sizeOf(c.shape);
    const [p, g, m] = [randomArray(c.rand, n), randomArray(c.rand, n, 0.1), randomArray(c.rand, n, 0.01)];
    const v = Float32Array.from(randomArray(c.rand, n, 0.001), Math.abs);
    const run = (fused: boolean) => () => {
      const t = [p, g, m, v].map((x) => tf.tensor(x, c.shape));
      const out = (fused ? adamwUpdate : adamwReference)(t[0], t[1], t[2], t[3], c.opts);
      return [out.p, out.m, out.v];
    };
    expect(tf.getKernel(ADAMW_KERNEL, kit.tfBackend), 'adamwUpdate would fall back to the composition').toBeDefined();
    const want = await onStockCpu(run(false));
    kit.install();
    let got: Float32Array[];
    try {
      got = await onBackend(kit.tfBackend, run(true));
    } finally {
      kit.uninstall();
    }
    for (let i = 0; i < 3; i++) expect(Array.from(got[i]), ['p', 'm', 'v'][i]).toEqual(Array.from(want[i]));
  });
});
