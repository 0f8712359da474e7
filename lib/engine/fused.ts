// Fused transformer ops with hand-written gradients (tf.customGrad): the same math as the plain-op
// compositions in lib/model, in fewer kernel calls forward and backward. Each is tested against
// its composition on values and gradients (test/engine/fused.test.ts). RoPE additionally has a
// one-pass kernel on the wasm and cpu backends (its gradient is the rotation by -angle).
import { tf } from './tf.js';
import type { NativeAddon } from './native.js';

type Tensor = tf.Tensor;

/**
 * Is a gradient tape recording (inside tf.grad / variableGrads)? Outside one, the fused ops run
 * their forward ops directly: tf.customGrad's own bookkeeping costs more than it saves on the
 * small tensors of decoding.
 */
function recording(): boolean {
  return (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}

/** Sums `g` (shaped like a broadcast result) back to `shape`, as a broadcast operand's gradient. */
function reduceTo(g: Tensor, shape: number[]): Tensor {
  const axes = tf.backend_util.getReductionAxes(shape, g.shape);
  const summed = axes.length ? tf.sum(g, axes) : g;
  return tf.reshape(summed, shape);
}

/**
 * RMSNorm over the last axis: x * rsqrt(mean(x^2) + eps) * (w + offset). offset 1 is Gemma's
 * (1 + w) convention. x [..., D], w [D].
 * Backward with n = x * r, r = rsqrt(mean(x^2) + eps), s = w + offset:
 *   dw = sum(dy * n),  dx = r * (dy*s - n * mean(dy*s * n)).
 */
export function rmsNorm(x: Tensor, w: Tensor, eps: number, opts: { offset?: 0 | 1 } = {}): Tensor {
  const offset = opts.offset ?? 0;
  if (!recording()) {
    return tf.tidy(() => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), offset ? tf.add(w, offset) : w));
  }
  const f = tf.customGrad((xi: Tensor | tf.GradSaveFunc, wi: Tensor | tf.GradSaveFunc, save: Tensor | tf.GradSaveFunc) => {
    const [x_, w_] = [xi as Tensor, wi as Tensor];
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(x_), -1, true), eps));
    const n = tf.mul(x_, r);
    const s = offset ? tf.add(w_, offset) : w_;
    (save as tf.GradSaveFunc)([n, r, s]);
    return {
      value: tf.mul(n, s),
      gradFunc: (dy: Tensor, [nS, rS, sS]: Tensor[]) => {
        const ds = tf.mul(dy, sS);
        const dx = tf.mul(rS, tf.sub(ds, tf.mul(nS, tf.mean(tf.mul(ds, nS), -1, true))));
        const dw = reduceTo(tf.mul(dy, nS), sS.shape);
        return [dx, dw];
      },
    };
  });
  return f(x, w);
}

/**
 * SwiGLU's gating: silu(gate) * up, elementwise. Backward with s = sigmoid(gate):
 *   dgate = dy * up * s * (1 + gate * (1 - s)),  dup = dy * gate * s.
 */
export function swiglu(gate: Tensor, up: Tensor): Tensor {
  tf.util.assert(
    gate.shape.length === up.shape.length && gate.shape.every((d, i) => d === up.shape[i]),
    () => `swiglu: \`gate\` [${gate.shape}] and \`up\` [${up.shape}] must have the same shape`,
  );
  if (!recording()) return tf.tidy(() => tf.mul(tf.mul(gate, tf.sigmoid(gate)), up));
  const f = tf.customGrad((gi: Tensor | tf.GradSaveFunc, ui: Tensor | tf.GradSaveFunc, save: Tensor | tf.GradSaveFunc) => {
    const [g, u] = [gi as Tensor, ui as Tensor];
    const s = tf.sigmoid(g);
    const silu = tf.mul(g, s);
    (save as tf.GradSaveFunc)([g, u, s, silu]);
    return {
      value: tf.mul(silu, u),
      gradFunc: (dy: Tensor, [gS, uS, sS, siluS]: Tensor[]) => {
        const dsilu = tf.mul(sS, tf.add(1, tf.mul(gS, tf.sub(1, sS))));
        return [tf.mul(tf.mul(dy, uS), dsilu), tf.mul(dy, siluS)];
      },
    };
  });
  return f(gate, up);
}

export interface FusedAttentionOptions {
  /** multiplies q·k */
  scale: number;
  /** tanh soft-cap of the scaled scores, before the mask */
  softcap?: number;
}

/**
 * Scaled-dot-product attention with grouped KV heads, forward and backward by hand:
 * q [B, H, Tq, dh], k/v [B, Hkv, Tk, dh], additive mask [1|B, 1, Tq, Tk] (or undefined).
 * Query head h reads KV head floor(h / (H / Hkv)). Returns output [B, H, Tq, dh] and probs
 * [B, H, Tq, Tk]; gradients flow through `output` to q, k, v (and the mask); `probs` is a
 * by-product for outputAttentions and carries no gradient.
 * Backward (per KV group, S = scores, P = softmax(S), dO): dV = Pᵀ dO, dP = dO Vᵀ,
 * dS = P * (dP - rowsum(dP * P)) (times 1 - tanh² under softcap), dQ = dS K * scale,
 * dK = dSᵀ Q * scale.
 */
export function fusedAttention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | undefined, opts: FusedAttentionOptions): { output: Tensor; probs: Tensor } {
  const [B, H, Tq, dh] = q.shape;
  const [Bk, Hkv, Tk, dhk] = k.shape;
  tf.util.assert(
    q.rank === 4 && k.rank === 4 && v.rank === 4 && Bk === B && dhk === dh && H % Hkv === 0 &&
      v.shape.every((d, i) => d === k.shape[i]),
    () => `fusedAttention: expected q [B, H, Tq, dh], k and v [B, Hkv, Tk, dh] with H a multiple of Hkv; ` +
      `got q [${q.shape}], k [${k.shape}], v [${v.shape}]`,
  );
  const g = H / Hkv;
  const { scale, softcap } = opts;
  let probsOut: Tensor | null = null;

  const forward = (qi: Tensor, ki: Tensor, vi: Tensor, maskI: Tensor | null, save: tf.GradSaveFunc) => {
    const qg = tf.reshape(qi, [B, Hkv, g * Tq, dh]);
    let s = tf.mul(tf.matMul(qg, ki, false, true), scale); // [B, Hkv, g*Tq, Tk]
    let capped: Tensor | null = null;
    if (softcap !== undefined) {
      capped = tf.tanh(tf.div(s, softcap));
      s = tf.mul(capped, softcap);
    }
    if (maskI !== null) s = tf.reshape(tf.add(tf.reshape(s, [B, H, Tq, Tk]), maskI), [B, Hkv, g * Tq, Tk]);
    const p = tf.softmax(s, -1);
    // customGrad's forward runs in its own tidy that keeps only the output: keep probs past it, and
    // hand it back to the caller's scope below.
    probsOut = tf.keep(tf.reshape(p, [B, H, Tq, Tk]));
    save(capped === null ? [qg, ki, vi, p] : [qg, ki, vi, p, capped]);
    return tf.reshape(tf.matMul(p, vi), [B, H, Tq, dh]);
  };

  const takeProbs = () => {
    const kept = probsOut as unknown as Tensor;
    const probs = tf.clone(kept); // tracked by the caller's tidy scope, unlike the kept original
    kept.dispose();
    return probs;
  };

  const backward = (dy: Tensor, saved: Tensor[]) => {
    const [qg, kS, vS, p, capped] = saved;
    const dOg = tf.reshape(dy, [B, Hkv, g * Tq, dh]);
    const dv = tf.matMul(p, dOg, true, false); // [B, Hkv, Tk, dh]
    const dp = tf.matMul(dOg, vS, false, true); // [B, Hkv, g*Tq, Tk]
    let ds = tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true)));
    const dMaskFull = ds;
    if (capped !== undefined) ds = tf.mul(ds, tf.sub(1, tf.square(capped)));
    const dq = tf.reshape(tf.mul(tf.matMul(ds, kS), scale), [B, H, Tq, dh]);
    const dk = tf.mul(tf.matMul(ds, qg, true, false), scale);
    return { dq, dk, dv, dMaskFull };
  };

  if (!recording()) {
    const output = tf.tidy(() => forward(q, k, v, mask ?? null, () => {}));
    return { output, probs: takeProbs() };
  }

  let output: Tensor;
  if (mask === undefined) {
    const f = tf.customGrad((qi: Tensor | tf.GradSaveFunc, ki: Tensor | tf.GradSaveFunc, vi: Tensor | tf.GradSaveFunc, save: Tensor | tf.GradSaveFunc) => ({
      value: forward(qi as Tensor, ki as Tensor, vi as Tensor, null, save as tf.GradSaveFunc),
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const { dq, dk, dv } = backward(dy, saved);
        return [dq, dk, dv];
      },
    }));
    output = f(q, k, v);
  } else {
    const maskShape = mask.shape;
    const f = tf.customGrad((qi: Tensor | tf.GradSaveFunc, ki: Tensor | tf.GradSaveFunc, vi: Tensor | tf.GradSaveFunc, mi: Tensor | tf.GradSaveFunc, save: Tensor | tf.GradSaveFunc) => ({
      value: forward(qi as Tensor, ki as Tensor, vi as Tensor, mi as Tensor, save as tf.GradSaveFunc),
      gradFunc: (dy: Tensor, saved: Tensor[]) => {
        const { dq, dk, dv, dMaskFull } = backward(dy, saved);
        return [dq, dk, dv, reduceTo(tf.reshape(dMaskFull, [B, H, Tq, Tk]), maskShape)];
      },
    }));
    output = f(q, k, v, mask);
  }
  return { output, probs: takeProbs() };
}

// ---------------------------------------------------------------------------------------------
// RoPE

export const ROPE_KERNEL = 'DeepalignRope';

/**
 * out[..., i] = x1 * cos - x2 * sin, out[..., i + half] = x2 * cos + x1 * sin, with x1 = x[..., i],
 * x2 = x[..., i + half] (transformers' rotate_half convention). x [B, T, H, dh]; cos/sin
 * [B or 1, T, 1, dh/2] (or [B or 1, T, dh/2]) broadcast over heads.
 */
function ropeLoop(x: ArrayLike<number>, cos: ArrayLike<number>, sin: ArrayLike<number>, out: Float32Array, B: number, T: number, H: number, dh: number, tableBatch: number, sinSign: number): void {
  const half = dh / 2;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const tab = ((tableBatch === 1 ? 0 : b) * T + t) * half;
      for (let h = 0; h < H; h++) {
        const base = ((b * T + t) * H + h) * dh;
        for (let i = 0; i < half; i++) {
          const c = cos[tab + i];
          const s = sinSign * sin[tab + i];
          const x1 = x[base + i];
          const x2 = x[base + i + half];
          out[base + i] = x1 * c - x2 * s;
          out[base + i + half] = x2 * c + x1 * s;
        }
      }
    }
  }
}

interface RopeAttrs { sinSign: number }

function ropeGeometry(x: tf.TensorInfo, cos: tf.TensorInfo) {
  const [B, T, H, dh] = x.shape;
  return { B, T, H, dh, tableBatch: cos.shape[0] };
}

interface CpuLike {
  data: { get(id: object): { values: ArrayLike<number> } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): tf.TensorInfo;
}
interface WasmLike {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
}

export const ropeCpuConfig: tf.KernelConfig = {
  kernelName: ROPE_KERNEL,
  backendName: 'cpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, cos, sin } = inputs as { x: tf.TensorInfo; cos: tf.TensorInfo; sin: tf.TensorInfo };
    const cpu = backend as unknown as CpuLike;
    const g = ropeGeometry(x, cos);
    const out = new Float32Array(tf.util.sizeFromShape(x.shape));
    ropeLoop(cpu.data.get(x.dataId).values, cpu.data.get(cos.dataId).values, cpu.data.get(sin.dataId).values, out, g.B, g.T, g.H, g.dh, g.tableBatch, (attrs as unknown as RopeAttrs).sinSign);
    return cpu.makeTensorInfo(x.shape, 'float32', out);
  },
};

export const ropeWasmConfig: tf.KernelConfig = {
  kernelName: ROPE_KERNEL,
  backendName: 'wasm',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { x, cos, sin } = inputs as { x: tf.TensorInfo; cos: tf.TensorInfo; sin: tf.TensorInfo };
    const wasm = backend as unknown as WasmLike;
    const g = ropeGeometry(x, cos);
    const out = wasm.makeOutput(x.shape, 'float32');
    ropeLoop(wasm.typedArrayFromHeap(x), wasm.typedArrayFromHeap(cos), wasm.typedArrayFromHeap(sin), wasm.typedArrayFromHeap(out), g.B, g.T, g.H, g.dh, g.tableBatch, (attrs as unknown as RopeAttrs).sinSign);
    return out;
  },
};

/** The composition with plain ops (other backends, and the reference in tests). */
export function ropeReference(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const half = x.shape[3]! / 2;
  const [c, s] = [cos, sin].map((t) => (t.rank === 3 ? tf.expandDims(t, 2) : t));
  const [x1, x2] = tf.split(x, [half, half], 3);
  return tf.concat([tf.sub(tf.mul(x1, c), tf.mul(x2, s)), tf.add(tf.mul(x2, c), tf.mul(x1, s))], 3);
}

/**
 * Rotary position embedding, one pass forward and backward on wasm/cpu (the gradient of a
 * rotation is the rotation by the opposite angle); plain ops elsewhere. cos/sin carry no gradient.
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const [B, T, , dh] = x.shape;
  const tableOk = (t: Tensor) =>
    (t.rank === 4 ? t.shape[2] === 1 && t.shape[3] === dh / 2 : t.rank === 3 && t.shape[2] === dh / 2) &&
    (t.shape[0] === 1 || t.shape[0] === B) && t.shape[1] === T;
  tf.util.assert(
    x.rank === 4 && dh % 2 === 0 && tableOk(cos) && tableOk(sin) && cos.shape.every((d, i) => d === sin.shape[i]),
    () => `rope: expected x [B, T, H, dh] (dh even) and cos/sin [B or 1, T, 1, dh/2]; got x [${x.shape}], cos [${cos.shape}], sin [${sin.shape}]`,
  );
  const native = tf.getKernel(ROPE_KERNEL, tf.getBackend()) !== undefined && x.dtype === 'float32';
  if (!native) return ropeReference(x, cos, sin);
  if (!recording()) return tf.engine().runKernel(ROPE_KERNEL, { x, cos, sin }, { sinSign: 1 } as unknown as tf.NamedAttrMap) as Tensor;
  const f = tf.customGrad((xi: Tensor | tf.GradSaveFunc, save: Tensor | tf.GradSaveFunc) => {
    // The tables are saved, not just captured: the caller's tidy may dispose them before backprop.
    (save as tf.GradSaveFunc)([cos, sin]);
    return {
      value: tf.engine().runKernel(ROPE_KERNEL, { x: xi as Tensor, cos, sin }, { sinSign: 1 } as unknown as tf.NamedAttrMap) as Tensor,
      gradFunc: (dy: Tensor, [cosS, sinS]: Tensor[]) =>
        tf.engine().runKernel(ROPE_KERNEL, { x: dy, cos: cosS, sin: sinS }, { sinSign: -1 } as unknown as tf.NamedAttrMap) as Tensor,
    };
  });
  return f(x);
}

/** Registers the RoPE, AdamW and cross-entropy kernels on cpu and wasm (idempotent); initEngine calls it. */
export function registerFusedKernels(): string[] {
  const registered: string[] = [];
  for (const config of [ropeCpuConfig, ropeWasmConfig, adamwCpuConfig, adamwWasmConfig, ...crossEntropyConfigs]) {
    if (tf.getKernel(config.kernelName, config.backendName) === undefined) tf.registerKernel(config);
    registered.push(`${config.kernelName} (${config.backendName})`);
  }
  return registered;
}

// ---------------------------------------------------------------------------------------------
// AdamW

export const ADAMW_KERNEL = 'DeepalignAdamW';

export interface AdamWUpdateOptions {
  /** learning rate of this step */
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** decoupled weight decay; 0 for parameters without decay */
  weightDecay: number;
  /** step number t (1-based) for the bias corrections */
  step: number;
}

/**
 * One AdamW update of one parameter, the same float32 arithmetic as lib/train's AdamW
 * (torch.optim.AdamW): m' = b1 m + (1-b1) g; v' = b2 v + (1-b2) g^2;
 * p' = p (1 - lr wd) - (m' / (sqrt(v') / sqrt(1 - b2^t) + eps)) * (lr / (1 - b1^t)).
 * Each operation is rounded to float32 in the same order as that composition, so on the cpu
 * backend the result is bit-identical to it.
 */
function adamwLoop(
  p: ArrayLike<number>, g: ArrayLike<number>, m: ArrayLike<number>, v: ArrayLike<number>,
  pOut: Float32Array, mOut: Float32Array, vOut: Float32Array, a: AdamWUpdateOptions,
): void {
  const fr = Math.fround;
  const B1 = fr(a.beta1), C1 = fr(1 - a.beta1), B2 = fr(a.beta2), C2 = fr(1 - a.beta2);
  const decay = a.weightDecay > 0;
  const D = fr(1 - a.lr * a.weightDecay);
  const S2 = fr(Math.sqrt(1 - a.beta2 ** a.step));
  const EPS = fr(a.eps);
  const LRB = fr(a.lr / (1 - a.beta1 ** a.step));
  for (let i = 0; i < pOut.length; i++) {
    const gi = g[i];
    const m1 = fr(fr(m[i] * B1) + fr(gi * C1));
    const v1 = fr(fr(v[i] * B2) + fr(fr(gi * gi) * C2));
    const decayed = decay ? fr(p[i] * D) : p[i];
    const denom = fr(fr(fr(Math.sqrt(v1)) / S2) + EPS);
    mOut[i] = m1;
    vOut[i] = v1;
    pOut[i] = fr(decayed - fr(fr(m1 / denom) * LRB));
  }
}

/** The float32 constants of adamwLoop, in the native addon's order. */
function adamwConsts(a: AdamWUpdateOptions): Float32Array {
  return Float32Array.of(
    a.beta1, 1 - a.beta1, a.beta2, 1 - a.beta2, 1 - a.lr * a.weightDecay,
    Math.sqrt(1 - a.beta2 ** a.step), a.eps, a.lr / (1 - a.beta1 ** a.step),
  );
}

function adamwAttrs(attrs: tf.NamedAttrMap | undefined): AdamWUpdateOptions {
  return attrs as unknown as AdamWUpdateOptions;
}

export const adamwCpuConfig: tf.KernelConfig = {
  kernelName: ADAMW_KERNEL,
  backendName: 'cpu',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { p, g, m, v } = inputs as Record<'p' | 'g' | 'm' | 'v', tf.TensorInfo>;
    const cpu = backend as unknown as CpuLike;
    const n = tf.util.sizeFromShape(p.shape);
    const [pOut, mOut, vOut] = [new Float32Array(n), new Float32Array(n), new Float32Array(n)];
    const read = (t: tf.TensorInfo) => cpu.data.get(t.dataId).values;
    adamwLoop(read(p), read(g), read(m), read(v), pOut, mOut, vOut, adamwAttrs(attrs));
    return [cpu.makeTensorInfo(p.shape, 'float32', pOut), cpu.makeTensorInfo(p.shape, 'float32', mOut), cpu.makeTensorInfo(p.shape, 'float32', vOut)];
  },
};

export const adamwWasmConfig: tf.KernelConfig = {
  kernelName: ADAMW_KERNEL,
  backendName: 'wasm',
  kernelFunc: ({ inputs, backend, attrs }) => {
    const { p, g, m, v } = inputs as Record<'p' | 'g' | 'm' | 'v', tf.TensorInfo>;
    const wasm = backend as unknown as WasmLike;
    const outs = [wasm.makeOutput(p.shape, 'float32'), wasm.makeOutput(p.shape, 'float32'), wasm.makeOutput(p.shape, 'float32')];
    const view = (t: tf.TensorInfo) => wasm.typedArrayFromHeap(t); // after all allocations
    adamwLoop(view(p), view(g), view(m), view(v), view(outs[0]), view(outs[1]), view(outs[2]), adamwAttrs(attrs));
    return outs;
  },
};

interface WasmHeapLike extends WasmLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
}

/** The wasm AdamW kernel through the native addon (SIMD loop on the heap in place). */
export function adamwWasmNativeConfig(addon: NativeAddon): tf.KernelConfig {
  return {
    kernelName: ADAMW_KERNEL,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { p, g, m, v } = inputs as Record<'p' | 'g' | 'm' | 'v', tf.TensorInfo>;
      const wasm = backend as unknown as WasmHeapLike;
      const outs = [wasm.makeOutput(p.shape, 'float32'), wasm.makeOutput(p.shape, 'float32'), wasm.makeOutput(p.shape, 'float32')];
      const buffer = wasm.wasm.HEAPU8.buffer as ArrayBuffer; // after all allocations
      const offsets = Uint32Array.from([p, g, m, v, ...outs], (t) => wasm.dataIdMap.get(t.dataId).memoryOffset >>> 2);
      const a = adamwAttrs(attrs);
      addon.adamw([buffer, buffer, buffer, buffer, buffer, buffer, buffer], offsets, tf.util.sizeFromShape(p.shape), adamwConsts(a), a.weightDecay > 0);
      return outs;
    },
  };
}

/** lib/train's composition with tf ops (other backends, and the reference in tests). */
export function adamwReference(p: Tensor, g: Tensor, m: Tensor, v: Tensor, a: AdamWUpdateOptions): { p: Tensor; m: Tensor; v: Tensor } {
  return tf.tidy(() => {
    const m1 = tf.add(tf.mul(m, a.beta1), tf.mul(g, 1 - a.beta1));
    const v1 = tf.add(tf.mul(v, a.beta2), tf.mul(tf.square(g), 1 - a.beta2));
    const decayed = a.weightDecay > 0 ? tf.mul(p, 1 - a.lr * a.weightDecay) : p;
    const denom = tf.add(tf.div(tf.sqrt(v1), Math.sqrt(1 - a.beta2 ** a.step)), a.eps);
    return { p: tf.sub(decayed, tf.mul(tf.div(m1, denom), a.lr / (1 - a.beta1 ** a.step))), m: m1, v: v1 };
  });
}

/**
 * One AdamW step for one parameter in a single kernel call on wasm/cpu (the composition costs a
 * dozen calls per parameter, ~450 per step for the benchmark model); returns new p, m, v for the
 * caller to assign. Not differentiable (an optimizer update).
 */
export function adamwUpdate(p: Tensor, g: Tensor, m: Tensor, v: Tensor, opts: AdamWUpdateOptions): { p: Tensor; m: Tensor; v: Tensor } {
  const same = (t: Tensor) => t.shape.length === p.shape.length && t.shape.every((d, i) => d === p.shape[i]);
  tf.util.assert(
    same(g) && same(m) && same(v) && [p, g, m, v].every((t) => t.dtype === 'float32'),
    () => `adamwUpdate: p, g, m, v must be float32 of one shape; got [${p.shape}] ${p.dtype}, [${g.shape}] ${g.dtype}, [${m.shape}] ${m.dtype}, [${v.shape}] ${v.dtype}`,
  );
  tf.util.assert(Number.isInteger(opts.step) && opts.step >= 1, () => `adamwUpdate: \`step\` must be an integer >= 1, but is ${opts.step}`);
  if (tf.getKernel(ADAMW_KERNEL, tf.getBackend()) === undefined) return adamwReference(p, g, m, v, opts);
  const [pNew, mNew, vNew] = tf.engine().runKernel(ADAMW_KERNEL, { p, g, m, v }, opts as unknown as tf.NamedAttrMap) as unknown as Tensor[];
  return { p: pNew, m: mNew, v: vNew };
}

// ---------------------------------------------------------------------------------------------
// cross-entropy

/**
 * Per-position negative log-likelihood -log softmax(logits)[target] = logsumexp(logits) -
 * logits[target], with a hand-written gradient softmax(logits) - onehot(target) (times the
 * upstream gradient). logits [..., V] float32, targets [...] int32 (ids in [0, V)). Gradient
 * flows to logits only. Replaces oneHot * logits + logSumExp and their autodiff (Max's gradient
 * compares every logit with the maximum; Sum's builds a ones tensor the size of the logits).
 */
export function crossEntropy(logits: Tensor, targets: Tensor): Tensor {
  const V = logits.shape[logits.rank - 1];
  tf.util.assert(
    targets.rank === logits.rank - 1 && targets.shape.every((d, i) => d === logits.shape[i]),
    () => `crossEntropy: \`targets\` [${targets.shape}] must be \`logits\` [${logits.shape}] without its last axis`,
  );
  tf.util.assert(targets.dtype === 'int32', () => `crossEntropy: \`targets\` must be int32, but is ${targets.dtype}`);
  tf.util.assert(logits.dtype === 'float32', () => `crossEntropy: \`logits\` must be float32, but is ${logits.dtype}`);
  const outShape = targets.shape;
  const n = tf.util.sizeFromShape(outShape);
  const kernels = tf.getKernel(CE_KERNEL, tf.getBackend()) !== undefined;

  // Plain ops (backends without the one-pass kernels).
  const forwardOps = (l: Tensor) => {
    const l2 = tf.reshape(l, [n, V]);
    const m = tf.max(l2, -1, true);
    const lse = tf.add(tf.log(tf.sum(tf.exp(tf.sub(l2, m)), -1, true)), m); // [N, 1]
    const picked = tf.gather(l2, tf.reshape(targets, [n, 1]), 1, 1); // [N, 1]
    return { lse, nll: tf.reshape(tf.sub(lse, picked), outShape) };
  };
  const forward = (l: Tensor): { lse: Tensor; nll: Tensor } => {
    if (!kernels) return forwardOps(l);
    const [nll, lse] = tf.engine().runKernel(CE_KERNEL, { logits: tf.reshape(l, [n, V]), targets: tf.reshape(targets, [n]) }, {}) as unknown as Tensor[];
    return { lse, nll: tf.reshape(nll, outShape) };
  };
  if (!recording()) return tf.tidy(() => forward(logits).nll);
  const f = tf.customGrad((li: Tensor | tf.GradSaveFunc, save: Tensor | tf.GradSaveFunc) => {
    const { lse, nll } = forward(li as Tensor);
    (save as tf.GradSaveFunc)([li as Tensor, lse, targets]);
    return {
      value: nll,
      gradFunc: (dy: Tensor, [lS, lseS, targetsS]: Tensor[]) => {
        const l2 = tf.reshape(lS, [n, V]);
        const t1 = tf.reshape(targetsS, [n]);
        const d1 = tf.reshape(dy, [n]);
        if (kernels) {
          return tf.reshape(tf.engine().runKernel(CE_GRAD_KERNEL, { logits: l2, lse: tf.reshape(lseS, [n]), targets: t1, dy: d1 }, {}) as Tensor, logits.shape);
        }
        const probs = tf.exp(tf.sub(l2, lseS)); // softmax [N, V]
        const g = tf.sub(probs, tf.oneHot(t1, V));
        return tf.reshape(tf.mul(g, tf.reshape(d1, [n, 1])), logits.shape);
      },
    };
  });
  return f(logits);
}

export const CE_KERNEL = 'DeepalignCrossEntropy';
export const CE_GRAD_KERNEL = 'DeepalignCrossEntropyGrad';

/** nll[i] = lse[i] - l[i, t[i]], lse[i] = log sum_j exp(l[i, j]) (max-shifted, in float64). */
function crossEntropyLoop(l: ArrayLike<number>, t: ArrayLike<number>, nll: Float32Array, lse: Float32Array, n: number, V: number): void {
  for (let i = 0; i < n; i++) {
    const row = i * V;
    let m = -Infinity;
    for (let j = 0; j < V; j++) if (l[row + j] > m) m = l[row + j];
    let sum = 0;
    for (let j = 0; j < V; j++) sum += Math.exp(l[row + j] - m);
    const s = Math.log(sum) + m;
    const target = t[i];
    if (!(target >= 0 && target < V)) throw new Error(`crossEntropy: target id ${target} at position ${i} is not in [0, ${V - 1}]`);
    lse[i] = s;
    nll[i] = s - l[row + target];
  }
}

/** g[i, j] = (exp(l[i, j] - lse[i]) - [j == t[i]]) * dy[i]. */
function crossEntropyGradLoop(l: ArrayLike<number>, lse: ArrayLike<number>, t: ArrayLike<number>, dy: ArrayLike<number>, g: Float32Array, n: number, V: number): void {
  for (let i = 0; i < n; i++) {
    const row = i * V;
    const s = lse[i];
    const d = dy[i];
    for (let j = 0; j < V; j++) g[row + j] = Math.exp(l[row + j] - s) * d;
    g[row + t[i]] -= d;
  }
}

interface CeInputs { logits: tf.TensorInfo; targets: tf.TensorInfo; lse?: tf.TensorInfo; dy?: tf.TensorInfo }

export const crossEntropyConfigs: tf.KernelConfig[] = [
  {
    kernelName: CE_KERNEL,
    backendName: 'cpu',
    kernelFunc: ({ inputs, backend }) => {
      const { logits, targets } = inputs as unknown as CeInputs;
      const cpu = backend as unknown as CpuLike;
      const [n, V] = logits.shape;
      const [nll, lse] = [new Float32Array(n), new Float32Array(n)];
      crossEntropyLoop(cpu.data.get(logits.dataId).values, cpu.data.get(targets.dataId).values, nll, lse, n, V);
      return [cpu.makeTensorInfo([n], 'float32', nll), cpu.makeTensorInfo([n], 'float32', lse)];
    },
  },
  {
    kernelName: CE_KERNEL,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const { logits, targets } = inputs as unknown as CeInputs;
      const wasm = backend as unknown as WasmLike;
      const [n, V] = logits.shape;
      const outs = [wasm.makeOutput([n], 'float32'), wasm.makeOutput([n], 'float32')];
      crossEntropyLoop(wasm.typedArrayFromHeap(logits), wasm.typedArrayFromHeap(targets), wasm.typedArrayFromHeap(outs[0]), wasm.typedArrayFromHeap(outs[1]), n, V);
      return outs;
    },
  },
  {
    kernelName: CE_GRAD_KERNEL,
    backendName: 'cpu',
    kernelFunc: ({ inputs, backend }) => {
      const { logits, lse, targets, dy } = inputs as unknown as Required<CeInputs>;
      const cpu = backend as unknown as CpuLike;
      const [n, V] = logits.shape;
      const g = new Float32Array(n * V);
      const read = (t: tf.TensorInfo) => cpu.data.get(t.dataId).values;
      crossEntropyGradLoop(read(logits), read(lse), read(targets), read(dy), g, n, V);
      return cpu.makeTensorInfo([n, V], 'float32', g);
    },
  },
  {
    kernelName: CE_GRAD_KERNEL,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend }) => {
      const { logits, lse, targets, dy } = inputs as unknown as Required<CeInputs>;
      const wasm = backend as unknown as WasmLike;
      const [n, V] = logits.shape;
      const out = wasm.makeOutput([n, V], 'float32');
      const view = (t: tf.TensorInfo) => wasm.typedArrayFromHeap(t);
      crossEntropyGradLoop(view(logits), view(lse), view(targets), view(dy), view(out), n, V);
      return out;
    },
  },
];

/** The wasm cross-entropy kernels through the native addon (on the heap in place). */
export function crossEntropyWasmNativeConfigs(addon: NativeAddon): tf.KernelConfig[] {
  const offsets = (wasm: WasmHeapLike, ts: tf.TensorInfo[]) => Uint32Array.from(ts, (t) => wasm.dataIdMap.get(t.dataId).memoryOffset >>> 2);
  return [
    {
      kernelName: CE_KERNEL,
      backendName: 'wasm',
      kernelFunc: ({ inputs, backend }) => {
        const { logits, targets } = inputs as unknown as CeInputs;
        const wasm = backend as unknown as WasmHeapLike;
        const [n, V] = logits.shape;
        const outs = [wasm.makeOutput([n], 'float32'), wasm.makeOutput([n], 'float32')];
        const bad = addon.crossEntropy(wasm.wasm.HEAPU8.buffer as ArrayBuffer, offsets(wasm, [logits, targets, ...outs]), n, V);
        if (bad >= 0) {
          const id = wasm.typedArrayFromHeap(targets)[bad];
          throw new Error(`crossEntropy: target id ${id} at position ${bad} is not in [0, ${V - 1}]`);
        }
        return outs;
      },
    },
    {
      kernelName: CE_GRAD_KERNEL,
      backendName: 'wasm',
      kernelFunc: ({ inputs, backend }) => {
        const { logits, lse, targets, dy } = inputs as unknown as Required<CeInputs>;
        const wasm = backend as unknown as WasmHeapLike;
        const [n, V] = logits.shape;
        const out = wasm.makeOutput([n, V], 'float32');
        addon.crossEntropyGrad(wasm.wasm.HEAPU8.buffer as ArrayBuffer, offsets(wasm, [logits, lse, targets, dy, out]), n, V);
        return out;
      },
    },
  ];
}
