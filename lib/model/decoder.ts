// One decoder-only transformer for every supported family, driven by ModelConfig.
// Read top to bottom: parameters -> norm -> rope -> mask -> attention -> mlp -> block -> model.
// References: transformers' modeling_llama.py, modeling_gemma2.py, modeling_gemma3.py,
// modeling_gpt2.py and masking_utils.py (eager attention path), v5.
//
// Shapes: B batch, T new positions, Tk key positions (past + T), D dModel, H nHeads,
// Hkv nKvHeads, dh dHead, V vocabSize.
//
// Weights are tf.Variables named and shaped exactly as in the HF checkpoint (Linear weights
// [out, in], gpt2's Conv1D weights [in, out]). Linear layers run as one 2-D matMul
// [B*T, in] x W^T with transposeB; every tfjs backend reads the transposed operand in place, so
// keeping the HF layout costs nothing at run time and saves a transposed copy of every weight
// (and keeps gradients, optimizer state and saved files in the checkpoint's layout).
import { tf } from '../engine/tf.js';
import { fusedAttention, rmsNorm as fusedRmsNorm, swiglu } from '../engine/index.js';
import type { LayerType, ModelConfig, RopeConfig } from '../io/hfConfig.js';
import { act, BLOCK_HOOK_SUFFIXES, HookSet, type HookFilter, type HookFn, type HookName } from './hooks.js';
import { checkForwardPadding, checkPositionIds, checkTokenIds, positionLimitName } from './inputs.js';

type Tensor = tf.Tensor;

// ---------------------------------------------------------------------------------------------
// parameters

export type InitKind = 'normal' | 'normal_residual' | 'ones' | 'zeros' | 'embedding';

export interface ParamSpec {
  name: string;
  shape: number[];
  /** how createModel initialises it, following transformers' _init_weights */
  init: InitKind;
}

/** A low-rank update added to a Linear's output (LoRA, lib/model/lora.ts). */
export interface LinearAdapter {
  /** x [N, in] (the Linear's input, flattened) -> the update [N, out] */
  delta(x2d: Tensor): Tensor;
  dispose(): void;
}

export interface Linear {
  w: tf.Variable;
  b?: tf.Variable;
  /** gpt2 Conv1D stores [in, out]; everything else is nn.Linear [out, in] */
  inOut: boolean;
  /** attached by lib/model/lora.ts; absent on a plain model (then linear() costs nothing extra) */
  adapter?: LinearAdapter;
}
interface Norm {
  w: tf.Variable;
  b?: tf.Variable;
}
interface BlockParams {
  attnNorm: Norm;
  /** gemma2/3 post-attention norm (sandwich) */
  attnOutNorm?: Norm;
  mlpNorm: Norm;
  /** gemma2/3 post-feedforward norm (sandwich) */
  mlpOutNorm?: Norm;
  q?: Linear;
  k?: Linear;
  v?: Linear;
  /** gpt2's fused c_attn [D, 3D] */
  qkv?: Linear;
  o: Linear;
  qNorm?: Norm;
  kNorm?: Norm;
  gate?: Linear;
  up: Linear;
  down: Linear;
}

/** Every parameter the config needs, with HF names and shapes, in checkpoint order. */
export function parameterSpecs(cfg: ModelConfig): ParamSpec[] {
  const { dModel: D, nHeads: H, nKvHeads: Hkv, dHead: dh, dMlp, vocabSize: V } = cfg;
  const specs: ParamSpec[] = [];
  const add = (name: string, shape: number[], init: InitKind) => specs.push({ name, shape, init });
  const normInit: InitKind = cfg.normWeightOffset === 1 ? 'zeros' : 'ones';
  if (cfg.modelType === 'gpt2') {
    add('transformer.wte.weight', [V, D], 'embedding');
    add('transformer.wpe.weight', [cfg.maxPositions, D], 'embedding');
    for (let i = 0; i < cfg.nLayers; i++) {
      const p = `transformer.h.${i}`;
      add(`${p}.ln_1.weight`, [D], 'ones');
      add(`${p}.ln_1.bias`, [D], 'zeros');
      add(`${p}.attn.c_attn.weight`, [D, 3 * D], 'normal');
      add(`${p}.attn.c_attn.bias`, [3 * D], 'zeros');
      add(`${p}.attn.c_proj.weight`, [D, D], 'normal_residual');
      add(`${p}.attn.c_proj.bias`, [D], 'zeros');
      add(`${p}.ln_2.weight`, [D], 'ones');
      add(`${p}.ln_2.bias`, [D], 'zeros');
      add(`${p}.mlp.c_fc.weight`, [D, dMlp], 'normal');
      add(`${p}.mlp.c_fc.bias`, [dMlp], 'zeros');
      add(`${p}.mlp.c_proj.weight`, [dMlp, D], 'normal_residual');
      add(`${p}.mlp.c_proj.bias`, [D], 'zeros');
    }
    add('transformer.ln_f.weight', [D], 'ones');
    add('transformer.ln_f.bias', [D], 'zeros');
    if (!cfg.tieEmbeddings) add('lm_head.weight', [V, D], 'normal');
    return specs;
  }
  add('model.embed_tokens.weight', [V, D], 'embedding');
  for (let i = 0; i < cfg.nLayers; i++) {
    const p = `model.layers.${i}`;
    add(`${p}.input_layernorm.weight`, [D], normInit);
    add(`${p}.self_attn.q_proj.weight`, [H * dh, D], 'normal');
    if (cfg.qkvBias) add(`${p}.self_attn.q_proj.bias`, [H * dh], 'zeros');
    add(`${p}.self_attn.k_proj.weight`, [Hkv * dh, D], 'normal');
    if (cfg.qkvBias) add(`${p}.self_attn.k_proj.bias`, [Hkv * dh], 'zeros');
    add(`${p}.self_attn.v_proj.weight`, [Hkv * dh, D], 'normal');
    if (cfg.qkvBias) add(`${p}.self_attn.v_proj.bias`, [Hkv * dh], 'zeros');
    add(`${p}.self_attn.o_proj.weight`, [D, H * dh], 'normal');
    if (cfg.oBias) add(`${p}.self_attn.o_proj.bias`, [D], 'zeros');
    if (cfg.qkNorm) {
      add(`${p}.self_attn.q_norm.weight`, [dh], normInit);
      add(`${p}.self_attn.k_norm.weight`, [dh], normInit);
    }
    add(`${p}.post_attention_layernorm.weight`, [D], normInit);
    if (cfg.sandwichNorm) {
      add(`${p}.pre_feedforward_layernorm.weight`, [D], normInit);
      add(`${p}.post_feedforward_layernorm.weight`, [D], normInit);
    }
    if (cfg.gatedMlp) {
      add(`${p}.mlp.gate_proj.weight`, [dMlp, D], 'normal');
      if (cfg.mlpBias) add(`${p}.mlp.gate_proj.bias`, [dMlp], 'zeros');
    }
    add(`${p}.mlp.up_proj.weight`, [dMlp, D], 'normal');
    if (cfg.mlpBias) add(`${p}.mlp.up_proj.bias`, [dMlp], 'zeros');
    add(`${p}.mlp.down_proj.weight`, [D, dMlp], 'normal');
    if (cfg.mlpBias) add(`${p}.mlp.down_proj.bias`, [D], 'zeros');
  }
  add('model.norm.weight', [D], normInit);
  if (!cfg.tieEmbeddings) add('lm_head.weight', [V, D], 'normal');
  return specs;
}

function bindBlocks(cfg: ModelConfig, vars: Map<string, tf.Variable>): BlockParams[] {
  const get = (name: string) => {
    const v = vars.get(name);
    if (!v) throw new Error(`decoder: missing parameter "${name}"`);
    return v;
  };
  const opt = (name: string) => vars.get(name);
  const blocks: BlockParams[] = [];
  for (let i = 0; i < cfg.nLayers; i++) {
    if (cfg.modelType === 'gpt2') {
      const p = `transformer.h.${i}`;
      const lin = (n: string): Linear => ({ w: get(`${p}.${n}.weight`), b: get(`${p}.${n}.bias`), inOut: true });
      blocks.push({
        attnNorm: { w: get(`${p}.ln_1.weight`), b: get(`${p}.ln_1.bias`) },
        mlpNorm: { w: get(`${p}.ln_2.weight`), b: get(`${p}.ln_2.bias`) },
        qkv: lin('attn.c_attn'),
        o: lin('attn.c_proj'),
        up: lin('mlp.c_fc'),
        down: lin('mlp.c_proj'),
      });
      continue;
    }
    const p = `model.layers.${i}`;
    const lin = (n: string): Linear => ({ w: get(`${p}.${n}.weight`), b: opt(`${p}.${n}.bias`), inOut: false });
    const norm = (n: string): Norm => ({ w: get(`${p}.${n}.weight`) });
    blocks.push({
      attnNorm: norm('input_layernorm'),
      // In gemma2/3 "post_attention_layernorm" normalises the attention output; in llama it is
      // the pre-MLP norm. Same HF name, different place.
      attnOutNorm: cfg.sandwichNorm ? norm('post_attention_layernorm') : undefined,
      mlpNorm: cfg.sandwichNorm ? norm('pre_feedforward_layernorm') : norm('post_attention_layernorm'),
      mlpOutNorm: cfg.sandwichNorm ? norm('post_feedforward_layernorm') : undefined,
      q: lin('self_attn.q_proj'),
      k: lin('self_attn.k_proj'),
      v: lin('self_attn.v_proj'),
      o: lin('self_attn.o_proj'),
      qNorm: cfg.qkNorm ? norm('self_attn.q_norm') : undefined,
      kNorm: cfg.qkNorm ? norm('self_attn.k_norm') : undefined,
      gate: cfg.gatedMlp ? lin('mlp.gate_proj') : undefined,
      up: lin('mlp.up_proj'),
      down: lin('mlp.down_proj'),
    });
  }
  return blocks;
}

/** x [..., in] -> [..., out], as one 2-D matMul over the flattened leading dims. */
function linear(x: Tensor, p: Linear): Tensor {
  const inDim = x.shape[x.shape.length - 1]!;
  const lead = x.shape.slice(0, -1) as number[];
  const x2d = x.reshape([-1, inDim]);
  let y = tf.matMul(x2d, p.w, false, !p.inOut); // [N, out]
  if (p.b) y = tf.add(y, p.b);
  // PEFT's order: base layer (with its bias) first, then the adapter's update
  if (p.adapter) y = tf.add(y, p.adapter.delta(x2d));
  return y.reshape([...lead, y.shape[1]!]);
}

// ---------------------------------------------------------------------------------------------
// norm

/** RMSNorm over the last axis: x / sqrt(mean(x^2) + eps) * (offset + w). */
function rmsNorm(x: Tensor, p: Norm, eps: number, offset: 0 | 1): Tensor {
  const variance = tf.mean(tf.square(x), -1, true);
  const normed = tf.mul(x, tf.rsqrt(tf.add(variance, eps)));
  return tf.mul(normed, offset ? tf.add(p.w, 1) : p.w);
}

/** LayerNorm over the last axis with biased variance (torch.nn.LayerNorm). */
function layerNorm(x: Tensor, p: Norm, eps: number): Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  const normed = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
  const scaled = tf.mul(normed, p.w);
  return p.b ? tf.add(scaled, p.b) : scaled;
}

/** RMSNorm through lib/engine's fused op (one kernel forward and backward) or the composition. */
function rmsNormWith(fused: boolean, x: Tensor, p: Norm, eps: number, offset: 0 | 1): Tensor {
  return fused ? fusedRmsNorm(x, p.w, eps, { offset }) : rmsNorm(x, p, eps, offset);
}

function applyNorm(cfg: ModelConfig, x: Tensor, p: Norm, fused: boolean): Tensor {
  return cfg.norm === 'layer' ? layerNorm(x, p, cfg.normEps) : rmsNormWith(fused, x, p, cfg.normEps, cfg.normWeightOffset);
}

// ---------------------------------------------------------------------------------------------
// rope

/**
 * inv_freq[i] = 1 / theta^(2i/dh), rescaled per transformers' rope init functions
 * (_compute_default_rope_parameters, _compute_linear_scaling_rope_parameters,
 * _compute_llama3_parameters). Rounded to float32 like the torch buffer.
 */
export function ropeInvFreq(rope: RopeConfig, dHead: number): Float32Array {
  const half = dHead / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    // torch: base ** (arange(0, dim, 2).float() / dim), in float32
    const exponent = Math.fround((2 * i) / dHead);
    inv[i] = Math.fround(1 / Math.fround(Math.pow(rope.theta, exponent)));
  }
  if (rope.type === 'linear') {
    for (let i = 0; i < half; i++) inv[i] = inv[i] / rope.factor!;
  } else if (rope.type === 'llama3') {
    // Llama 3.1: keep high frequencies, divide low frequencies by `factor`, interpolate between.
    const factor = rope.factor!;
    const low = rope.lowFreqFactor!;
    const high = rope.highFreqFactor!;
    const oldContext = rope.originalMaxPositions!;
    const lowFreqWavelen = oldContext / low;
    const highFreqWavelen = oldContext / high;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i];
      if (wavelen > lowFreqWavelen) inv[i] = inv[i] / factor;
      else if (wavelen >= highFreqWavelen) {
        const smooth = (oldContext / wavelen - low) / (high - low);
        inv[i] = ((1 - smooth) * inv[i]) / factor + smooth * inv[i];
      }
    }
  }
  return Float32Array.from(inv);
}

interface RopeTables {
  /** [B, T, 1, dh] each (transformers' cat(freqs, freqs)), broadcast over heads */
  cos: Tensor;
  sin: Tensor;
  /** [dh, dh] signed permutation with x @ R = rotate_half(x) = cat(-x2, x1) */
  rotateHalf: Tensor;
}

/** The rotate_half permutation as a matrix (cached per head size). */
const rotateHalfMatrices = new Map<number, Float32Array>();
function rotateHalfMatrix(dh: number): Float32Array {
  let r = rotateHalfMatrices.get(dh);
  if (!r) {
    r = new Float32Array(dh * dh);
    const half = dh / 2;
    for (let i = 0; i < half; i++) {
      r[(i + half) * dh + i] = -1; // out[i] = -x[i + half]
      r[i * dh + i + half] = 1; // out[i + half] = x[i]
    }
    rotateHalfMatrices.set(dh, r);
  }
  return r;
}

function ropeTables(positions: Tensor, invFreq: Float32Array): RopeTables {
  const [B, T] = positions.shape;
  const dh = invFreq.length * 2;
  // angle[b, t, i] = position[b, t] * inv_freq[i mod dh/2], in float32 like transformers' rotary embedding
  const freqs = Float32Array.from({ length: dh }, (_, i) => invFreq[i % invFreq.length]);
  const angle = tf.mul(positions.toFloat().reshape([B, T, 1, 1]), tf.tensor1d(freqs).reshape([1, 1, 1, dh]));
  return { cos: tf.cos(angle), sin: tf.sin(angle), rotateHalf: tf.tensor2d(rotateHalfMatrix(dh), [dh, dh]) };
}

/**
 * x * cos + rotate_half(x) * sin on x [B, T, H, dh] (transformers' apply_rotary_pos_emb).
 * rotate_half is a matMul with a signed permutation matrix: every output is one input times ±1
 * plus exact zeros, so the result is bit-identical to slicing, and on the cpu and wasm backends
 * it is 2-3x faster (forward and backward) than split + concat. (lib/engine's one-pass `rope`
 * kernel is not used yet: its gradient reads cos/sin from a closure, which tf.tidy has freed by
 * the time a training step's backward pass runs.)
 */
function applyRope(x: Tensor, { cos, sin, rotateHalf }: RopeTables): Tensor {
  const dh = x.shape[3]!;
  const rotated = tf.matMul(x.reshape([-1, dh]), rotateHalf).reshape(x.shape);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
}

// ---------------------------------------------------------------------------------------------
// mask

/** float32 min: what transformers' eager attention adds at masked positions. */
export const MASK_VALUE = -3.4028234663852886e38;

/**
 * Additive mask [1 or B, 1, T, Tk] for queries at absolute positions past..past+T-1: 0 where the
 * key is visible (causal, inside the sliding window, not padding), MASK_VALUE elsewhere. Built
 * from cache indices, not position ids, as transformers' masking_utils does; a sliding window
 * keeps key k for query q iff q - window < k <= q. `padding` rows are the attention mask
 * [B][Tk] (1 = token); it is built here in one pass rather than as a broadcast of two tensors,
 * which is several times faster on the wasm backend.
 */
function buildMask(T: number, past: number, window: number | undefined, padding: number[][] | undefined): Tensor | undefined {
  const Tk = past + T;
  const needed = T > 1 || padding !== undefined || (window !== undefined && Tk > window);
  if (!needed) return undefined;
  const rows = padding ?? [undefined];
  const bias = new Float32Array(rows.length * T * Tk);
  rows.forEach((maskRow, b) => {
    for (let t = 0; t < T; t++) {
      const q = past + t;
      const offset = (b * T + t) * Tk;
      for (let k = 0; k < Tk; k++) {
        const visible = k <= q && (window === undefined || k > q - window) && (maskRow === undefined || maskRow[k] !== 0);
        if (!visible) bias[offset + k] = MASK_VALUE;
      }
    }
  });
  return tf.tensor4d(bias, [rows.length, 1, T, Tk]);
}

// ---------------------------------------------------------------------------------------------
// attention

export interface AttentionOptions {
  /** multiplies q·k */
  scale: number;
  /** tanh soft-cap of the scaled scores, before the mask */
  softcap?: number;
  /** hook on the masked pre-softmax scores [B, H, Tq, Tk] */
  onScores?: (scores: Tensor) => Tensor;
  /** hook on the probabilities [B, H, Tq, Tk] */
  onPattern?: (probs: Tensor) => Tensor;
  /** whether the caller uses `probs` (outputAttentions or hooks); a fused kernel may skip them otherwise */
  needProbs?: boolean;
}

/** One attention implementation: same inputs and outputs as `attention` below. */
export type AttentionFn = (q: Tensor, k: Tensor, v: Tensor, mask: Tensor | undefined, opts: AttentionOptions) => { output: Tensor; probs?: Tensor };

/**
 * Eager scaled-dot-product attention with grouped KV heads.
 * q [B, H, Tq, dh], k/v [B, Hkv, Tk, dh], mask additive [1|B, 1, Tq, Tk] or undefined.
 * Query head h reads KV head floor(h / (H / Hkv)) (transformers' repeat_kv); instead of
 * repeating K and V, the g = H/Hkv query heads of a group are stacked along the query axis
 * ([B, Hkv, g*Tq, dh], a free reshape) so each group is one batched matMul.
 * Returns output [B, H, Tq, dh] and probs [B, H, Tq, Tk].
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | undefined, opts: AttentionOptions): { output: Tensor; probs: Tensor } {
  const [B, H, Tq, dh] = q.shape as number[];
  const Hkv = k.shape[1]!;
  const Tk = k.shape[2]!;
  const g = H / Hkv;
  const qGrouped = tf.mul(q, opts.scale).reshape([B, Hkv, g * Tq, dh]);
  let scores = tf.matMul(qGrouped, k, false, true).reshape([B, H, Tq, Tk]);
  if (opts.softcap !== undefined) scores = tf.mul(tf.tanh(tf.div(scores, opts.softcap)), opts.softcap);
  if (mask) scores = tf.add(scores, mask);
  if (opts.onScores) scores = opts.onScores(scores);
  let probs = tf.softmax(scores, -1);
  if (opts.onPattern) probs = opts.onPattern(probs);
  const output = tf.matMul(probs.reshape([B, Hkv, g * Tq, Tk]), v).reshape([B, H, Tq, dh]);
  return { output, probs };
}

/** Attention implementations by name (transformers' ALL_ATTENTION_FUNCTIONS); 'eager' is the reference. */
const ATTENTION_IMPLEMENTATIONS = new Map<string, AttentionFn>([['eager', attention]]);

/**
 * Make an attention implementation (e.g. a fused kernel from lib/engine) selectable by name via
 * `model.attnImplementation = name` or `forward(..., {attnImplementation: name})`. It must honour
 * the mask, scale, softcap and hooks exactly as `attention` does, and return `probs` whenever
 * `opts.needProbs` is true.
 */
export function registerAttention(name: string, fn: AttentionFn): void {
  ATTENTION_IMPLEMENTATIONS.set(name, fn);
}

// ---------------------------------------------------------------------------------------------
// mlp

function activation(cfg: ModelConfig, x: Tensor): Tensor {
  switch (cfg.act) {
    case 'silu':
      return tf.mul(x, tf.sigmoid(x));
    case 'gelu_tanh': {
      // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))  (gelu_pytorch_tanh / gelu_new)
      // x * x^2 rather than pow(x, 3): pow is a slow generic kernel on the cpu backend
      const inner = tf.mul(tf.add(x, tf.mul(tf.mul(x, tf.square(x)), 0.044715)), Math.sqrt(2 / Math.PI));
      return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
    }
    case 'gelu':
      return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
    case 'relu':
      return tf.relu(x);
  }
}

// ---------------------------------------------------------------------------------------------
// block and model

/** Past keys/values per layer, [B, Hkv, Tpast, dh] each, after RoPE. */
export interface KVCache {
  keys: Tensor[];
  values: Tensor[];
  /** number of cached positions */
  length: number;
}

export function disposeCache(cache: KVCache | undefined): void {
  if (!cache) return;
  for (const t of [...cache.keys, ...cache.values]) t.dispose();
}

export type IdsInput = number[][] | tf.Tensor2D;

export interface ForwardOptions {
  /** [B, Tpast + T], 1 = attend, 0 = padding. Default: all ones (never inferred; without it a row
   *  that starts with the config's pad id - left padding - is an error, right padding is allowed). */
  attentionMask?: number[][] | tf.Tensor2D;
  /** [B, T] positions. Default: past + 0..T-1 (transformers' default without position_ids). */
  positionIds?: number[][] | tf.Tensor2D;
  /** [B, T, D] rows of the embedding matrix (unscaled; the model applies gemma's sqrt(d)
   *  scale and gpt2's position embeddings). Give either ids or this. */
  inputsEmbeds?: tf.Tensor3D;
  outputAttentions?: boolean;
  outputHiddenStates?: boolean;
  /** past keys/values (not consumed: the caller still owns and disposes it) */
  cache?: KVCache;
  /** return the keys/values including this call's positions in `out.cache` */
  useCache?: boolean;
  /** compute logits only for the last n positions (generation uses 1) */
  logitsToKeep?: number;
  /** hooks, see hooks.ts */
  hooks?: HookSet;
  /** names whose activations are returned in `out.activations` (runWithCache) */
  cacheNames?: (name: HookName) => boolean;
  /** attention implementation registered with registerAttention (default: model.attnImplementation) */
  attnImplementation?: string;
  /** 'fused' uses lib/engine's fused RMSNorm, SwiGLU and attention; 'reference' the plain
   *  tf compositions (default: model.kernels) */
  kernels?: KernelChoice;
}

export type KernelChoice = 'fused' | 'reference';

export interface ForwardOutput {
  /** [B, T (or logitsToKeep), V] */
  logits: tf.Tensor3D;
  /** L+1 tensors [B, T, D]: embeddings output, the output of blocks 0..L-2, and the final norm
   *  of block L-1's output (transformers' convention). */
  hiddenStates?: tf.Tensor3D[];
  /** per layer [B, H, T, Tk] softmax probabilities */
  attentions?: tf.Tensor4D[];
  cache?: KVCache;
  /** activations recorded for `cacheNames` */
  activations?: Record<string, Tensor>;
}

/** Activations recorded by runWithCache, by full hook name. */
export class ActivationCache {
  constructor(
    readonly tensors: Record<string, Tensor>,
    private readonly nLayers: number,
  ) {}
  /** Full name, or the TransformerLens shorthand get('pattern', -1). */
  get(name: HookName | string, layer?: number): Tensor {
    const full = layer === undefined && name.includes('hook_') ? name : act(name, layer, this.nLayers);
    const t = this.tensors[full];
    if (!t) throw new Error(`ActivationCache: no activation "${full}"; recorded: ${Object.keys(this.tensors).slice(0, 8).join(', ')}${Object.keys(this.tensors).length > 8 ? ', …' : ''}`);
    return t;
  }
  has(name: string): boolean {
    return name in this.tensors;
  }
  keys(): string[] {
    return Object.keys(this.tensors);
  }
  dispose(): void {
    for (const t of Object.values(this.tensors)) t.dispose();
  }
}

/** ids or positions, already checked (lib/model/inputs.ts), as an int32 tensor. */
function toIntTensor(x: number[][] | tf.Tensor2D): tf.Tensor2D {
  if (x instanceof tf.Tensor) return x.dtype === 'int32' ? x : (x.toInt() as tf.Tensor2D);
  return tf.tensor2d(x, [x.length, x[0].length], 'int32');
}

export class Decoder {
  readonly config: ModelConfig;
  private readonly params: Map<string, tf.Variable>;
  private readonly blocks: BlockParams[];
  private readonly invFreq: Partial<Record<LayerType, Float32Array>> = {};
  /** the attention implementation forward uses unless told otherwise ('eager' = the reference) */
  attnImplementation = 'eager';
  /** fused lib/engine ops (faster, same math to float rounding) or plain tf compositions */
  kernels: KernelChoice = 'fused';
  /** generation_config.json of a loaded checkpoint (generate takes its eos/pad ids as defaults) */
  generationConfig: Record<string, any> = {};

  constructor(config: ModelConfig, params: Map<string, tf.Variable>) {
    this.config = config;
    this.params = params;
    this.blocks = bindBlocks(config, params);
    if (config.positional === 'rope') {
      for (const lt of ['full', 'sliding'] as const) this.invFreq[lt] = ropeInvFreq(config.rope![lt], config.dHead);
    }
  }

  /** Number of weights (tied embeddings counted once). */
  get numParameters(): number {
    let n = 0;
    for (const v of this.params.values()) n += v.size;
    return n;
  }

  /** All weights by HF name (the training loop takes gradients with respect to these). */
  variables(): Map<string, tf.Variable> {
    return this.params;
  }

  /** The token embedding matrix [V, D] (one-hot @ this = inputsEmbeds, for GCG). */
  embeddingMatrix(): tf.Variable {
    return this.params.get(this.config.modelType === 'gpt2' ? 'transformer.wte.weight' : 'model.embed_tokens.weight')!;
  }

  /** The unembedding [V, D] (the embedding matrix when tied). */
  unembeddingMatrix(): tf.Variable {
    return this.config.tieEmbeddings ? this.embeddingMatrix() : this.params.get('lm_head.weight')!;
  }

  /** Token embeddings [B, T, D], unscaled (what `inputsEmbeds` expects). */
  embed(ids: IdsInput): tf.Tensor3D {
    checkTokenIds(ids, this.config.vocabSize, 'embed', 'ids');
    return tf.tidy(() => tf.gather(this.embeddingMatrix(), toIntTensor(ids)) as tf.Tensor3D);
  }

  /**
   * Every block's Linear layer by its Hugging Face module name (the weight's name without
   * `.weight`, e.g. `model.layers.0.self_attn.q_proj`, gpt2's `transformer.h.0.attn.c_attn`), in
   * forward order. lib/model/lora.ts attaches adapters to these.
   */
  linearLayers(): Map<string, Linear> {
    const out = new Map<string, Linear>();
    const gpt2 = this.config.modelType === 'gpt2';
    this.blocks.forEach((p, i) => {
      const at = gpt2 ? `transformer.h.${i}` : `model.layers.${i}`;
      const named: [string, Linear | undefined][] = gpt2
        ? [['attn.c_attn', p.qkv], ['attn.c_proj', p.o], ['mlp.c_fc', p.up], ['mlp.c_proj', p.down]]
        : [['self_attn.q_proj', p.q], ['self_attn.k_proj', p.k], ['self_attn.v_proj', p.v], ['self_attn.o_proj', p.o],
          ['mlp.gate_proj', p.gate], ['mlp.up_proj', p.up], ['mlp.down_proj', p.down]];
      for (const [name, lin] of named) if (lin) out.set(`${at}.${name}`, lin);
    });
    return out;
  }

  dispose(): void {
    for (const v of this.params.values()) v.dispose();
    for (const lin of this.linearLayers().values()) lin.adapter?.dispose();
  }

  /**
   * Run the model. Differentiable with respect to the variables and to `inputsEmbeds`; usable
   * inside tf.tidy / tf.variableGrads. Intermediates are freed; returned tensors belong to the caller.
   */
  forward(inputIds: IdsInput | null, opts: ForwardOptions = {}): ForwardOutput {
    return this.run(inputIds, opts, 'forward');
  }

  /** forward for every public entry point: inputs checked first, errors named after `caller`. */
  private run(inputIds: IdsInput | null, opts: ForwardOptions, caller: string): ForwardOutput {
    this.checkInputs(inputIds, opts, caller);
    // tidy keeps every tensor reachable from the returned object and frees the rest
    return tf.tidy(() => this.forwardUntidied(inputIds, opts, caller) as unknown as tf.TensorContainer) as unknown as ForwardOutput;
  }

  /**
   * The input checks of lib/model/inputs.ts: token ids are integers in [0, vocabSize) (tensors
   * too, on backends whose data is in host memory); with learned absolute positions (gpt2) every
   * position is below n_positions; without an attention mask a left-padded row (starting with
   * the config's pad id, when that is not an eos id) is an error. Right padding is allowed: causal
   * attention leaves the real positions' logits unchanged.
   */
  private checkInputs(inputIds: IdsInput | null, opts: ForwardOptions, caller: string): void {
    const cfg = this.config;
    const grid = inputIds ? checkTokenIds(inputIds, cfg.vocabSize, caller, 'inputIds') : undefined;
    const learned = cfg.positional === 'learned';
    const why = ` (this ${cfg.modelType} model's ${positionLimitName(cfg)}: learned absolute position embeddings)`;
    if (opts.positionIds) checkPositionIds(opts.positionIds, learned ? cfg.maxPositions : undefined, caller, why);
    else if (learned) {
      const T = inputIds ? (inputIds instanceof tf.Tensor ? inputIds.shape[1]! : (inputIds[0]?.length ?? 0)) : (opts.inputsEmbeds?.shape[1] ?? 0);
      const past = opts.cache?.length ?? 0;
      if (past + T > cfg.maxPositions) {
        throw new Error(
          `${caller}: ${past ? `${past} cached + ` : ''}${T} positions exceed this ${cfg.modelType} model's ${positionLimitName(cfg)} ${cfg.maxPositions} ` +
            `(learned absolute position embeddings: there is none for position ${cfg.maxPositions} or later)`,
        );
      }
    }
    const pad = cfg.padTokenId ?? this.generationConfig.pad_token_id;
    const eos = ([] as unknown[]).concat(cfg.eosTokenId ?? [], this.generationConfig.eos_token_id ?? []);
    if (grid && !opts.attentionMask && !opts.cache && typeof pad === 'number' && !eos.includes(pad)) checkForwardPadding(grid, pad, caller);
  }

  /** Every hook point this model fires, in forward order (see hooks.ts for shapes). */
  hookNames(): HookName[] {
    const cfg = this.config;
    const names: HookName[] = ['hook_embed'];
    if (cfg.positional === 'learned') names.push('hook_pos_embed');
    const perBlock = BLOCK_HOOK_SUFFIXES.filter((s) => cfg.positional === 'rope' || (s !== 'attn.hook_rot_q' && s !== 'attn.hook_rot_k'));
    for (let i = 0; i < cfg.nLayers; i++) for (const s of perBlock) names.push(`blocks.${i}.${s}`);
    names.push('ln_final.hook_normalized');
    return names;
  }

  /**
   * Check hook names against this model and resolve negative block indices
   * (`blocks.-1.attn.hook_pattern` is the last block's), so a typo fails loudly instead of
   * silently never firing.
   */
  resolveHookName(name: string, caller = 'hooks'): HookName {
    const L = this.config.nLayers;
    const resolved = name.replace(/^blocks\.(-\d+)\./, (_, i: string) => `blocks.${L + Number(i)}.`);
    if (!this.hookNames().includes(resolved as HookName)) {
      const block = /^blocks\.(-?\d+)\.(.*)$/.exec(resolved);
      const why = block && (Number(block[1]) < 0 || Number(block[1]) >= L)
        ? `block ${block[1]} does not exist (${L} blocks)`
        : `known: hook_embed, ${this.config.positional === 'learned' ? 'hook_pos_embed, ' : ''}ln_final.hook_normalized, blocks.{i}.{${BLOCK_HOOK_SUFFIXES.join('|')}}`;
      throw new Error(`${caller}: unknown hook point "${name}" for this ${L}-block ${this.config.modelType} model; ${why}`);
    }
    return resolved as HookName;
  }

  /**
   * Forward pass that records activations: `names` is a list of hook names (negative block
   * indices count from the end), a filter, or omitted for all of them. Unknown names throw.
   * The cached tensors belong to the caller: call `cache.dispose()`.
   */
  runWithCache(
    inputIds: IdsInput | null,
    opts: Omit<ForwardOptions, 'cacheNames'> & { names?: string[] | ((name: HookName) => boolean) } = {},
  ): { out: ForwardOutput; cache: ActivationCache } {
    const { names: given, ...rest } = opts;
    const names = Array.isArray(given) ? given.map((n) => this.resolveHookName(n, 'runWithCache')) : given;
    const filter = names === undefined ? () => true : typeof names === 'function' ? names : (n: HookName) => names.includes(n);
    const out = this.run(inputIds, { ...rest, cacheNames: filter }, 'runWithCache');
    const cache = new ActivationCache(out.activations ?? {}, this.config.nLayers);
    delete out.activations;
    return { out, cache };
  }

  /**
   * Forward pass with temporary hooks: `fwd` is a list of [name or filter, fn]; fn(act, {name,
   * layer}) may return a replacement of the same shape. Hooks live only for this call. Tensors a
   * hook wants to keep past the call must be tf.keep()-ed (the pass runs inside tf.tidy).
   */
  runWithHooks(inputIds: IdsInput | null, opts: Omit<ForwardOptions, 'hooks'> & { fwd: [HookFilter | string, HookFn][] }): ForwardOutput {
    const fwd = opts.fwd.map(([filter, fn]): [HookFilter, HookFn] => [typeof filter === 'string' ? this.resolveHookName(filter, 'runWithHooks') : filter, fn]);
    const { fwd: _given, ...rest } = opts;
    return this.run(inputIds, { ...rest, hooks: new HookSet(fwd) }, 'runWithHooks');
  }

  private forwardUntidied(inputIds: IdsInput | null, opts: ForwardOptions, caller: string): ForwardOutput {
    const cfg = this.config;
    const fused = (opts.kernels ?? this.kernels) === 'fused';
    const hooks = opts.hooks ?? new HookSet();
    const activations: Record<string, Tensor> = {};
    const hook = (name: HookName, x: Tensor, layer?: number): Tensor => {
      const y = hooks.empty ? x : hooks.run(name, x, layer);
      // a clone shares the data but not the handle, so disposing the cache never frees a tensor
      // that is also in hiddenStates/attentions (or recorded under another name)
      if (opts.cacheNames?.(name)) activations[name] = tf.clone(y);
      return y;
    };

    // embeddings ------------------------------------------------------------------------------
    let tokEmb: Tensor;
    if (opts.inputsEmbeds) {
      if (inputIds) throw new Error(`${caller}: give either inputIds or \`inputsEmbeds\`, not both`);
      tokEmb = opts.inputsEmbeds;
      if (tokEmb.rank !== 3 || tokEmb.shape[2] !== cfg.dModel) {
        throw new Error(`${caller}: \`inputsEmbeds\` must be [B, T, ${cfg.dModel}], got [${tokEmb.shape}]`);
      }
    } else {
      if (!inputIds) throw new Error(`${caller}: inputIds are required (or pass \`inputsEmbeds\`)`);
      const ids = toIntTensor(inputIds);
      tokEmb = tf.gather(this.embeddingMatrix(), ids); // [B, T, D]
    }
    const [B, T] = tokEmb.shape as number[];
    const past = opts.cache?.length ?? 0;
    const Tk = past + T;
    if (opts.cache && opts.cache.keys.length !== cfg.nLayers) throw new Error(`${caller}: cache has ${opts.cache.keys.length} layers, model has ${cfg.nLayers}`);

    // Gemma multiplies by sqrt(d) rounded to the activation dtype (a float32 constant here).
    if (cfg.embedScale !== undefined) tokEmb = tf.mul(tokEmb, Math.fround(cfg.embedScale));
    let h = hook('hook_embed', tokEmb);

    let positions: tf.Tensor2D;
    if (opts.positionIds) {
      positions = toIntTensor(opts.positionIds);
      if (positions.shape[0] !== B || positions.shape[1] !== T) throw new Error(`${caller}: \`positionIds\` must be [${B}, ${T}], got [${positions.shape}]`);
    } else {
      positions = tf.tile(tf.range(past, past + T, 1, 'int32').reshape([1, T]), [B, 1]) as tf.Tensor2D;
    }
    if (cfg.positional === 'learned') {
      const posEmb = hook('hook_pos_embed', tf.gather(this.params.get('transformer.wpe.weight')!, positions));
      h = tf.add(h, posEmb);
    }

    // masks and rope tables, one per layer type in use ------------------------------------------
    // The attention mask is small ([B, Tk] ints): read it once and build the masks on the CPU.
    // All-ones masks are dropped so unpadded batches take the cheaper causal-only path.
    let padding: number[][] | undefined;
    if (opts.attentionMask) {
      const m = opts.attentionMask instanceof tf.Tensor ? (opts.attentionMask.arraySync() as number[][]) : opts.attentionMask;
      if (m.length !== B || m.some((row) => row.length !== Tk)) {
        throw new Error(`${caller}: \`attentionMask\` must be [${B}, ${Tk}] (past + new positions), got [${m.length}, ${m[0]?.length}]`);
      }
      if (m.some((row) => row.some((x) => x === 0))) padding = m;
    }
    const masks: Partial<Record<LayerType, Tensor | undefined>> = {};
    const rope: Partial<Record<LayerType, RopeTables>> = {};
    for (const lt of new Set(cfg.layerTypes)) {
      masks[lt] = buildMask(T, past, lt === 'sliding' ? cfg.slidingWindow : undefined, padding);
      if (cfg.positional === 'rope') rope[lt] = ropeTables(positions, this.invFreq[lt]!);
    }

    const hiddenStates: Tensor[] = [];
    const attentions: Tensor[] = [];
    const newKeys: Tensor[] = [];
    const newValues: Tensor[] = [];
    const H = cfg.nHeads;
    const Hkv = cfg.nKvHeads;
    const dh = cfg.dHead;
    const scale = (cfg.queryPreAttnScalar ?? dh) ** -0.5;
    const implName = opts.attnImplementation ?? this.attnImplementation;
    const attend = ATTENTION_IMPLEMENTATIONS.get(implName);
    if (!attend) throw new Error(`${caller}: unknown attention implementation "${implName}"; registered: ${[...ATTENTION_IMPLEMENTATIONS.keys()].join(', ')}`);
    const hooked = !hooks.empty || opts.cacheNames !== undefined;
    // lib/engine's fused attention returns probabilities without a gradient and has no hook
    // points, so it only stands in for eager when neither attentions nor hooks are asked for
    // (PRESTO differentiates through outputAttentions and always gets the eager path).
    const attendFn: AttentionFn =
      fused && implName === 'eager' && !opts.outputAttentions && !hooked ? (q, k, v, mask, o) => fusedAttention(q, k, v, mask, { scale: o.scale, softcap: o.softcap }) : attend;

    for (let i = 0; i < cfg.nLayers; i++) {
      const p = this.blocks[i];
      const lt = cfg.layerTypes[i];
      h = hook(`blocks.${i}.hook_resid_pre`, h, i);
      if (opts.outputHiddenStates) hiddenStates.push(h);

      // attention -----------------------------------------------------------------------------
      const x = hook(`blocks.${i}.ln1.hook_normalized`, applyNorm(cfg, h, p.attnNorm, fused), i);
      let q: Tensor, k: Tensor, v: Tensor;
      if (p.qkv) {
        [q, k, v] = tf.split(linear(x, p.qkv), 3, 2); // gpt2 c_attn: [B, T, 3D] -> 3 x [B, T, D]
      } else {
        q = linear(x, p.q!);
        k = linear(x, p.k!);
        v = linear(x, p.v!);
      }
      q = q.reshape([B, T, H, dh]);
      k = k.reshape([B, T, Hkv, dh]);
      v = v.reshape([B, T, Hkv, dh]);
      if (p.qNorm) {
        q = rmsNormWith(fused, q, p.qNorm, cfg.normEps, cfg.normWeightOffset);
        k = rmsNormWith(fused, k, p.kNorm!, cfg.normEps, cfg.normWeightOffset);
      }
      q = hook(`blocks.${i}.attn.hook_q`, q, i);
      k = hook(`blocks.${i}.attn.hook_k`, k, i);
      v = hook(`blocks.${i}.attn.hook_v`, v, i);
      if (cfg.positional === 'rope') {
        q = hook(`blocks.${i}.attn.hook_rot_q`, applyRope(q, rope[lt]!), i);
        k = hook(`blocks.${i}.attn.hook_rot_k`, applyRope(k, rope[lt]!), i);
      }
      let kh = k.transpose([0, 2, 1, 3]); // [B, Hkv, T, dh]
      let vh = v.transpose([0, 2, 1, 3]);
      if (opts.cache) {
        kh = tf.concat([opts.cache.keys[i], kh], 2); // [B, Hkv, Tk, dh]
        vh = tf.concat([opts.cache.values[i], vh], 2);
      }
      if (opts.useCache) {
        newKeys.push(kh);
        newValues.push(vh);
      }
      const layerScale = cfg.scaleAttnByInverseLayerIdx ? scale / (i + 1) : scale;
      const { output, probs } = attendFn(q.transpose([0, 2, 1, 3]), kh, vh, masks[lt], {
        scale: layerScale,
        softcap: cfg.attnSoftcap,
        onScores: hooked ? (s) => hook(`blocks.${i}.attn.hook_attn_scores`, s, i) : undefined,
        onPattern: hooked ? (s) => hook(`blocks.${i}.attn.hook_pattern`, s, i) : undefined,
        needProbs: !!opts.outputAttentions || hooked,
      });
      if (opts.outputAttentions) {
        if (!probs) throw new Error(`${caller}: attention implementation "${implName}" returned no probabilities but outputAttentions is set`);
        attentions.push(probs);
      }
      const z = hook(`blocks.${i}.attn.hook_z`, output.transpose([0, 2, 1, 3]), i); // [B, T, H, dh]
      let attnOut = linear(z.reshape([B, T, H * dh]), p.o);
      if (p.attnOutNorm) attnOut = applyNorm(cfg, attnOut, p.attnOutNorm, fused);
      attnOut = hook(`blocks.${i}.hook_attn_out`, attnOut, i);
      h = hook(`blocks.${i}.hook_resid_mid`, tf.add(h, attnOut), i);

      // mlp -----------------------------------------------------------------------------------
      const y = hook(`blocks.${i}.ln2.hook_normalized`, applyNorm(cfg, h, p.mlpNorm, fused), i);
      let post: Tensor;
      if (p.gate) {
        const pre = hook(`blocks.${i}.mlp.hook_pre`, linear(y, p.gate), i);
        post = fused && cfg.act === 'silu' ? swiglu(pre, linear(y, p.up)) : tf.mul(activation(cfg, pre), linear(y, p.up));
      } else {
        const pre = hook(`blocks.${i}.mlp.hook_pre`, linear(y, p.up), i);
        post = activation(cfg, pre);
      }
      post = hook(`blocks.${i}.mlp.hook_post`, post, i);
      let mlpOut = linear(post, p.down);
      if (p.mlpOutNorm) mlpOut = applyNorm(cfg, mlpOut, p.mlpOutNorm, fused);
      mlpOut = hook(`blocks.${i}.hook_mlp_out`, mlpOut, i);
      h = hook(`blocks.${i}.hook_resid_post`, tf.add(h, mlpOut), i);
    }

    const finalNorm: Norm =
      cfg.modelType === 'gpt2'
        ? { w: this.params.get('transformer.ln_f.weight')!, b: this.params.get('transformer.ln_f.bias')! }
        : { w: this.params.get('model.norm.weight')! };
    h = hook('ln_final.hook_normalized', applyNorm(cfg, h, finalNorm, fused));
    if (opts.outputHiddenStates) hiddenStates.push(h);

    // unembed ---------------------------------------------------------------------------------
    const keep = opts.logitsToKeep ?? T;
    const hKept = keep < T ? h.slice([0, T - keep, 0], [B, keep, cfg.dModel]) : h;
    let logits = linear(hKept, { w: this.unembeddingMatrix(), inOut: false }); // [B, keep, V]
    if (cfg.finalSoftcap !== undefined) logits = tf.mul(tf.tanh(tf.div(logits, cfg.finalSoftcap)), cfg.finalSoftcap);

    const out: ForwardOutput = { logits: logits as tf.Tensor3D };
    if (opts.outputHiddenStates) out.hiddenStates = hiddenStates as tf.Tensor3D[];
    if (opts.outputAttentions) out.attentions = attentions as tf.Tensor4D[];
    if (opts.useCache) out.cache = { keys: newKeys, values: newValues, length: Tk };
    if (opts.cacheNames) out.activations = activations;
    return out;
  }
}
