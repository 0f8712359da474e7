// AdamW with decoupled weight decay, written out so its state can be checkpointed and so the
// update is exactly PyTorch's torch.optim.AdamW (default, non-amsgrad):
//   p <- p * (1 - lr * wd)
//   m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
//   p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// plus global-norm gradient clipping (torch.nn.utils.clip_grad_norm_).

import { adamwUpdate, tf } from '../engine/index.js';

export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Which parameters get weight decay. Default: tensors of rank >= 2 (matrices, embeddings), not norms or biases. */
  decay?: (name: string, variable: tf.Variable) => boolean;
}

export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** Optimizer steps taken (t in the bias corrections). */
  stepCount = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  private readonly decays = new Map<string, boolean>();

  constructor(readonly params: Map<string, tf.Variable>, options: AdamWOptions = {}) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.999;
    this.eps = options.eps ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    for (const [field, value, lo, hi] of [['beta1', this.beta1, 0, 1], ['beta2', this.beta2, 0, 1], ['eps', this.eps, 0, Infinity], ['weightDecay', this.weightDecay, 0, Infinity]] as const) {
      if (!(value >= lo && value < hi)) throw new Error(`AdamW: \`${field}\` must be in [${lo}, ${hi}), but is ${value}`);
    }
    const decay = options.decay ?? ((_: string, p: tf.Variable) => p.rank >= 2);
    for (const [name, p] of params) {
      if (p.dtype !== 'float32') throw new Error(`AdamW: parameter "${name}" has dtype ${p.dtype}; only float32 parameters are trained`);
      // Inside tidy: a tf.variable shares its initial tensor's data, and the initial tensor itself must not leak.
      this.m.set(name, tf.tidy(() => tf.variable(tf.zerosLike(p), false, `adamw.m.${name}.${uid}`)));
      this.v.set(name, tf.tidy(() => tf.variable(tf.zerosLike(p), false, `adamw.v.${name}.${uid++}`)));
      this.decays.set(name, decay(name, p));
    }
  }

  /** One update with learning rate `lr`. `grads` must hold a gradient for every parameter. */
  applyGradients(grads: Record<string, tf.Tensor>, lr: number): void {
    this.stepCount++;
    const t = this.stepCount;
    tf.tidy(() => {
      for (const [name, p] of this.params) {
        const g = grads[name];
        if (!g) throw new Error(`AdamW.applyGradients: no gradient for parameter "${name}"`);
        const m = this.m.get(name)!;
        const v = this.v.get(name)!;
        // lib/engine's one-kernel update (the same formulas composed from tf ops where no kernel is registered).
        const next = adamwUpdate(p, g, m, v, {
          lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.decays.get(name) ? this.weightDecay : 0, step: t,
        });
        m.assign(next.m);
        v.assign(next.v);
        p.assign(next.p);
      }
    });
  }

  /** The values applyGradients(grads, lr) would give each parameter and its moments, computed
   *  without changing any state; `use` reduces them (inside a tidy) to a scalar per parameter. */
  private trialUpdate(grads: Record<string, tf.Tensor>, lr: number, use: (next: { p: tf.Tensor; m: tf.Tensor; v: tf.Tensor }) => tf.Scalar): tf.Tensor1D {
    const t = this.stepCount + 1;
    return tf.tidy(() => {
      const out: tf.Scalar[] = [];
      for (const [name, p] of this.params) {
        const g = grads[name];
        if (!g) throw new Error(`AdamW: no gradient for parameter "${name}"`);
        // one parameter at a time, so the trial holds at most one parameter's worth of memory
        out.push(tf.tidy(() => use(adamwUpdate(p, g, this.m.get(name)!, this.v.get(name)!, {
          lr, beta1: this.beta1, beta2: this.beta2, eps: this.eps, weightDecay: this.decays.get(name) ? this.weightDecay : 0, step: t,
        }))));
      }
      return out.length ? (tf.stack(out) as tf.Tensor1D) : (tf.zeros([0]) as tf.Tensor1D);
    });
  }

  /**
   * A cheap check of what applyGradients(grads, lr) would do, without doing it: the sum of every
   * new parameter value. A finite result proves each new parameter value finite (one NaN or
   * ±Infinity makes the sum non-finite); a non-finite one may also be a finite-valued sum that
   * overflows, so confirm it with nonFiniteUpdateCounts. The moments need no check when the
   * gradients are finite: m is a convex combination of finite values and v of finite squares
   * (finite when the gradients' global norm is). No download: the caller reads the scalar.
   */
  trialParameterSum(grads: Record<string, tf.Tensor>, lr: number): tf.Scalar {
    return tf.tidy(() => tf.sum(this.trialUpdate(grads, lr, (next) => tf.sum(next.p) as tf.Scalar)) as tf.Scalar);
  }

  /** Per parameter (in `params` order), how many NaN/±Infinity values applyGradients(grads, lr)
   *  would put in the parameter and its two moments; no state changes, no download. */
  nonFiniteUpdateCounts(grads: Record<string, tf.Tensor>, lr: number): tf.Tensor1D {
    return this.trialUpdate(grads, lr, (next) => tf.addN([next.p, next.m, next.v].map((x) => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(x)), 'int32')))) as tf.Scalar);
  }

  /** Moments by parameter name, for checkpoints. */
  stateTensors(): { name: string; tensor: tf.Variable }[] {
    const out: { name: string; tensor: tf.Variable }[] = [];
    for (const name of this.params.keys()) {
      out.push({ name: `m.${name}`, tensor: this.m.get(name)! }, { name: `v.${name}`, tensor: this.v.get(name)! });
    }
    return out;
  }

  /** Restore moments and step count saved by stateTensors()/stepCount. */
  loadState(stepCount: number, values: Map<string, { shape: number[]; data: Float32Array | Int32Array }>): void {
    for (const { name, tensor } of this.stateTensors()) {
      const saved = values.get(name);
      if (!saved) throw new Error(`AdamW.loadState: checkpoint has no optimizer tensor "${name}"`);
      if (saved.shape.join(',') !== tensor.shape.join(',')) {
        throw new Error(`AdamW.loadState: optimizer tensor "${name}" has shape [${saved.shape}] in the checkpoint, expected [${tensor.shape}]`);
      }
      tf.tidy(() => tensor.assign(tf.tensor(saved.data, saved.shape, 'float32')));
    }
    this.stepCount = stepCount;
  }

  dispose(): void {
    for (const x of [...this.m.values(), ...this.v.values()]) x.dispose();
  }
}

let uid = 0;

/** Scale gradients so their global L2 norm is at most maxNorm; returns the norm before clipping. */
export function clipByGlobalNorm(grads: Record<string, tf.Tensor>, maxNorm: number): { grads: Record<string, tf.Tensor>; norm: tf.Scalar } {
  if (!(maxNorm > 0)) throw new Error(`clipByGlobalNorm: \`maxNorm\` must be positive, but is ${maxNorm}`);
  return tf.tidy(() => {
    const squares = Object.values(grads).map((g) => tf.sum(tf.square(g)));
    const norm = tf.sqrt(tf.addN(squares)) as tf.Scalar;
    // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1.
    const scale = tf.minimum(tf.div(maxNorm, tf.add(norm, 1e-6)), 1);
    const clipped: Record<string, tf.Tensor> = {};
    for (const [name, g] of Object.entries(grads)) clipped[name] = tf.mul(g, scale);
    return { grads: clipped, norm };
  });
}
