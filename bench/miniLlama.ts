// The benchmark's own minimal Llama, the same math as torch_reference.py (the PyTorch peer):
// RMSNorm -> RoPE attention with grouped KV heads and a causal mask -> SwiGLU MLP, untied head,
// cross-entropy, AdamW written with tf ops. Used until the bench switches to lib/model.
import { tf } from '../lib/engine/index.js';

type Tensor = tf.Tensor;

export interface MiniLlamaConfig {
  vocab: number;
  dModel: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  dMlp: number;
  ropeTheta: number;
  eps: number;
}

export const STANDARD_BENCH_MODEL: MiniLlamaConfig = {
  vocab: 512, dModel: 128, nLayers: 4, nHeads: 4, nKvHeads: 2, dMlp: 352, ropeTheta: 10000, eps: 1e-5,
};

export class MiniLlama {
  readonly params: tf.Variable[] = [];
  readonly emb: tf.Variable;
  readonly head: tf.Variable;
  readonly finalNorm: tf.Variable;
  readonly layers: Record<'n1' | 'n2' | 'q' | 'k' | 'v' | 'o' | 'g' | 'u' | 'd', tf.Variable>[] = [];
  private readonly dHead: number;

  constructor(readonly cfg: MiniLlamaConfig, seed = 0) {
    const { vocab: V, dModel: D, nHeads: H, nKvHeads: KV, dMlp: I } = cfg;
    const dh = (this.dHead = D / H);
    let s = seed;
    // nn.Linear's default init scale (uniform +-1/sqrt(in)); values do not matter for speed.
    const lin = (out: number, inp: number) => this.add(tf.randomUniform([out, inp], -1 / Math.sqrt(inp), 1 / Math.sqrt(inp), 'float32', s++));
    this.emb = this.add(tf.randomNormal([V, D], 0, 1, 'float32', s++));
    for (let l = 0; l < cfg.nLayers; l++) {
      this.layers.push({
        n1: this.add(tf.ones([D])), n2: this.add(tf.ones([D])),
        q: lin(H * dh, D), k: lin(KV * dh, D), v: lin(KV * dh, D), o: lin(D, H * dh),
        g: lin(I, D), u: lin(I, D), d: lin(D, I),
      });
    }
    this.finalNorm = this.add(tf.ones([D]));
    this.head = lin(V, D);
  }

  private add(t: Tensor): tf.Variable {
    const v = tf.variable(t);
    t.dispose();
    this.params.push(v);
    return v;
  }

  private rmsNorm(x: Tensor, w: Tensor): Tensor {
    const ms = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, this.cfg.eps))), w);
  }

  /** cos/sin tables for positions [start, start+T): [T, dh]. */
  private rope(start: number, T: number): [Tensor, Tensor] {
    const dh = this.dHead;
    const inv = tf.div(1, tf.pow(this.cfg.ropeTheta, tf.div(tf.range(0, dh, 2), dh)));
    const f = tf.mul(tf.expandDims(tf.range(start, start + T), 1), tf.expandDims(inv, 0));
    const ff = tf.concat([f, f], -1);
    return [tf.cos(ff), tf.sin(ff)];
  }

  private applyRope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
    const half = this.dHead / 2;
    const [x1, x2] = tf.split(x, [half, half], -1);
    return tf.add(tf.mul(x, cos), tf.mul(tf.concat([tf.neg(x2), x1], -1), sin));
  }

  private linear(x2d: Tensor, w: Tensor): Tensor {
    return tf.matMul(x2d, w, false, true);
  }

  /** logits [B, T, V]; with `caches`, appends this call's keys/values (decode). */
  forward(ids: Tensor, start = 0, caches?: { k: Tensor | null; v: Tensor | null }[]): Tensor {
    const { dModel: D, nHeads: H, nKvHeads: KV } = this.cfg;
    const dh = this.dHead;
    const [B, T] = ids.shape;
    const [cos, sin] = this.rope(start, T);
    let x = tf.reshape(tf.gather(this.emb, tf.reshape(ids, [-1])), [B * T, D]);
    for (let l = 0; l < this.layers.length; l++) {
      const p = this.layers[l];
      const h = this.rmsNorm(x, p.n1);
      const q = this.applyRope(tf.transpose(tf.reshape(this.linear(h, p.q), [B, T, H, dh]), [0, 2, 1, 3]), cos, sin);
      let k = this.applyRope(tf.transpose(tf.reshape(this.linear(h, p.k), [B, T, KV, dh]), [0, 2, 1, 3]), cos, sin);
      let v = tf.transpose(tf.reshape(this.linear(h, p.v), [B, T, KV, dh]), [0, 2, 1, 3]);
      if (caches) {
        const c = caches[l];
        if (c.k !== null && c.v !== null) {
          const [ok, ov] = [c.k, c.v];
          k = tf.concat([ok, k], 2);
          v = tf.concat([ov, v], 2);
          ok.dispose();
          ov.dispose();
        }
        c.k = tf.keep(k);
        c.v = tf.keep(v);
      }
      const Tk = k.shape[2] as number;
      // repeat_interleave over heads: [B, KV, Tk, dh] -> [B, H, Tk, dh]
      const rep = H / KV;
      // (rank-3 tile: tfjs has no Tile gradient above rank 4)
      const kr = tf.reshape(tf.tile(tf.reshape(k, [B * KV, 1, Tk * dh]), [1, rep, 1]), [B, H, Tk, dh]);
      const vr = tf.reshape(tf.tile(tf.reshape(v, [B * KV, 1, Tk * dh]), [1, rep, 1]), [B, H, Tk, dh]);
      let att = tf.mul(tf.matMul(q, kr, false, true), 1 / Math.sqrt(dh));
      if (T > 1) {
        const mask = tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([T, Tk]), -1, Tk - T)), -1e9);
        att = tf.add(att, mask);
      }
      const y = tf.reshape(tf.transpose(tf.matMul(tf.softmax(att), vr), [0, 2, 1, 3]), [B * T, H * dh]);
      x = tf.add(x, this.linear(y, p.o));
      const h2 = this.rmsNorm(x, p.n2);
      x = tf.add(x, this.linear(tf.mul(tf.mul(this.linear(h2, p.g), tf.sigmoid(this.linear(h2, p.g))), this.linear(h2, p.u)), p.d));
    }
    return tf.reshape(this.linear(this.rmsNorm(x, this.finalNorm), this.head), [B, T, this.cfg.vocab]);
  }

  loss(x: Tensor, y: Tensor): Tensor {
    const logits = tf.reshape(this.forward(x), [-1, this.cfg.vocab]);
    const logp = tf.logSoftmax(logits);
    const picked = tf.sum(tf.mul(logp, tf.oneHot(tf.reshape(y, [-1]), this.cfg.vocab)), -1);
    return tf.neg(tf.mean(picked));
  }
}

/** torch.optim.AdamW's update (defaults lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01). */
export class AdamW {
  private t = 0;
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];
  constructor(private readonly params: tf.Variable[], private readonly lr = 1e-3, private readonly b1 = 0.9, private readonly b2 = 0.999, private readonly eps = 1e-8, private readonly wd = 0.01) {
    this.m = params.map((p) => tf.variable(tf.zerosLike(p), false));
    this.v = params.map((p) => tf.variable(tf.zerosLike(p), false));
  }

  step(grads: Tensor[]): void {
    this.t++;
    const c1 = 1 - this.b1 ** this.t;
    const c2 = 1 - this.b2 ** this.t;
    tf.tidy(() => {
      this.params.forEach((p, i) => {
        const g = grads[i];
        const m = tf.add(tf.mul(this.m[i], this.b1), tf.mul(g, 1 - this.b1));
        const v = tf.add(tf.mul(this.v[i], this.b2), tf.mul(tf.square(g), 1 - this.b2));
        this.m[i].assign(m);
        this.v[i].assign(v);
        const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), this.eps));
        p.assign(tf.sub(tf.mul(p, 1 - this.lr * this.wd), tf.mul(update, this.lr)));
      });
    });
  }
}

/** One training step; resolves once the loss value is on the host (so timing includes all work). */
export async function trainStep(model: MiniLlama, opt: AdamW, x: Tensor, y: Tensor): Promise<number> {
  const { value, grads } = tf.variableGrads(() => model.loss(x, y) as tf.Scalar, model.params);
  opt.step(model.params.map((p) => grads[p.name]));
  const loss = (await value.data())[0];
  tf.dispose([value, ...Object.values(grads)]);
  return loss;
}

/** Greedy decoding with a KV cache: one prefill of the prompt, then one token per step. */
export async function greedyGenerate(model: MiniLlama, prompt: Tensor, newTokens: number): Promise<number[][]> {
  const caches = model.layers.map(() => ({ k: null as Tensor | null, v: null as Tensor | null }));
  const [B, P] = prompt.shape;
  const out: number[][] = Array.from({ length: B }, () => []);
  let next = tf.tidy(() => tf.argMax(tf.squeeze(tf.slice(model.forward(prompt, 0, caches), [0, P - 1, 0], [B, 1, -1]), [1]), -1));
  for (let i = 0; ; i++) {
    const ids = await next.data();
    ids.forEach((id, b) => out[b].push(id));
    if (i === newTokens - 1) break;
    const prev = next;
    next = tf.tidy(() => tf.argMax(tf.squeeze(model.forward(tf.reshape(prev, [B, 1]), P + i, caches), [1]), -1));
    prev.dispose();
  }
  next.dispose();
  caches.forEach((c) => tf.dispose([c.k!, c.v!]));
  return out;
}
