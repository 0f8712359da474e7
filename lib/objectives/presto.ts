// PRESTO (Vega & Singh, "Matching Ranks Over Probability Yields Truly Deep Safety Alignment"): an
// attention regulariser added to Qi et al.'s augmentation loss. On a safety-recovery example
// (x, h[:k], r) with k > 0, every query from the first prefill token on should look away from the
// harmful prefill h[:k]; PRESTO penalises the attention mass those queries put on the prefill keys.
//
// As the authors' code computes it (uiuc-focal-lab/push-forward-alignment, deep_safety_alignment.py,
// `--presto`, eager attention): for every layer l, head h, example b with a prefill, and query
// position q from the first prefill token p_b to the row's last token,
//
//   P = sum_{keys k in the prefill} attn_l[b, h, q, k]          (B, A: mass before / after the prefill)
//   term += (P - (B + A) + 1) * scale_factor / n_layers         (per head; = 2 P since P + B + A = 1)
//
// with scale_factor = 1 / (target tokens of the step), the normaliser of their summed cross-entropy.
// So their loss is  CE_mean + (2 / N) * S / n_layers  where S = sum_{l, b, h, q} P.
//
// Here `prestoTerm` is S / n_layers (the "scale 1" term) and `augmentationObjective({ presto })`
// adds  weight * scale * prestoTerm  to the token-mean response cross-entropy, with scale 'tokens'
// (default) = 2 / N, N = the batch's target tokens: weight 1 reproduces the authors' loss. (Their N
// also counts the k prefill tokens of each prefilled safety row, which carry no loss; the ratio of
// the attention term to the cross-entropy is the same, the overall loss scale slightly larger here.)
//
// Padding: their code computes p_b for the safety rows, then left-pads the safety block again to
// the utility block's width without shifting p_b, so the summed keys and queries are off by that
// padding whenever the blocks differ in width. Here the prefill is a mask and the query range is
// derived from it and the attention mask, so any padding (left, right, mixed across rows) gives the
// same term for the same sequences.

import { tf } from '../engine/tf.js';

type MaskInput = tf.Tensor2D | readonly (readonly number[])[];

function maskRows(x: MaskInput, name: string): number[][] {
  if (x instanceof tf.Tensor) {
    if (x.rank !== 2) throw new Error(`prestoTerm: \`${name}\` must be [B, T], but has shape [${x.shape}]`);
    return x.arraySync() as number[][];
  }
  if (!Array.isArray(x) || !x.every((r) => Array.isArray(r))) throw new Error(`prestoTerm: \`${name}\` must be a [B, T] tensor or number[][]`);
  return x.map((r) => [...r]);
}

/**
 * PRESTO's attention term: sum over layers, over examples with a prefill, heads, and query positions
 * q with q >= the row's first prefill position and attentionMask[b, q] = 1, of the attention mass on
 * the prefill keys, sum_{k: prefillMask[b, k] = 1} attn[b, h, q, k]; divided by the number of layers.
 *
 * attentions: per layer [B, H, T, T] softmax probabilities (a Decoder's `forward(ids,
 * { outputAttentions: true })`); prefillMask [B, T]: 1 on prefill tokens (real tokens only);
 * attentionMask [B, T]: 1 on real tokens. Rows without a prefill contribute 0. Differentiable in
 * the attentions (the masks are constants).
 */
export function prestoTerm(attentions: readonly tf.Tensor4D[], prefillMask: MaskInput, attentionMask: MaskInput): tf.Scalar {
  if (!Array.isArray(attentions) || attentions.length === 0) throw new Error('prestoTerm: `attentions` must be a non-empty array of per-layer [B, H, T, T] tensors');
  const [B, H, T, Tk] = attentions[0].shape;
  attentions.forEach((a, l) => {
    if (!(a instanceof tf.Tensor) || a.rank !== 4 || a.shape[0] !== B || a.shape[1] !== H || a.shape[2] !== T || a.shape[3] !== Tk) {
      throw new Error(`prestoTerm: \`attentions\`[${l}] must be [${B}, ${H}, ${T}, ${Tk}] like layer 0, but is ${a instanceof tf.Tensor ? `[${a.shape}]` : String(a)}`);
    }
  });
  if (T !== Tk) throw new Error(`prestoTerm: attentions must be square [B, H, T, T] (no cached keys), but are [${attentions[0].shape}]`);
  const prefill = maskRows(prefillMask, 'prefillMask');
  const attention = maskRows(attentionMask, 'attentionMask');
  for (const [name, rows] of [['prefillMask', prefill], ['attentionMask', attention]] as const) {
    if (rows.length !== B || rows.some((r) => r.length !== T)) throw new Error(`prestoTerm: \`${name}\` must be [${B}, ${T}] like the attentions`);
  }
  // The query mask: real tokens at or after the row's first prefill token (all 0 without a prefill).
  const queries = prefill.map((row, b) => {
    let seen = false;
    return row.map((m, t) => {
      if (m !== 0 && m !== 1) throw new Error(`prestoTerm: \`prefillMask\`[${b}][${t}] is ${m}; it must be 0 or 1`);
      if (m === 1 && attention[b][t] !== 1) throw new Error(`prestoTerm: \`prefillMask\`[${b}][${t}] marks a padding position (attentionMask is ${attention[b][t]}); prefill tokens must be real tokens`);
      seen = seen || m === 1;
      return seen && attention[b][t] === 1 ? 1 : 0;
    });
  });
  return tf.tidy(() => {
    const keys = tf.tensor4d(prefill.flat(), [B, 1, 1, T], 'float32');
    const q = tf.tensor3d(queries.flat(), [B, 1, T], 'float32');
    let total: tf.Tensor = tf.scalar(0);
    for (const a of attentions) {
      const mass = tf.sum(tf.mul(a, keys), 3); // [B, H, T]: attention on the prefill keys per query
      total = tf.add(total, tf.sum(tf.mul(mass, q)));
    }
    return tf.div(total, attentions.length) as tf.Scalar;
  });
}

export interface PrestoOptions {
  /** Multiplies the term (the authors: 1). Default 1. */
  weight?: number;
  /**
   * 'tokens' (default): 2 / (target tokens in the batch), the authors' normalisation (their
   * scale_factor 1 / N times the 2 of P - (B + A) + 1 = 2 P); or a fixed number.
   */
  scale?: number | 'tokens';
}

export interface ResolvedPrestoOptions {
  weight: number;
  scale: number | 'tokens';
}

/** Defaults filled in and checked; errors name the option. */
export function resolvePrestoOptions(options: PrestoOptions = {}): ResolvedPrestoOptions {
  if (typeof options !== 'object' || options === null) throw new Error(`presto: options must be an object, but are ${String(options)}`);
  for (const key of Object.keys(options)) if (key !== 'weight' && key !== 'scale') throw new Error(`presto: unknown option \`${key}\` (known: weight, scale)`);
  const weight = options.weight ?? 1;
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0) throw new Error(`presto: \`weight\` must be a finite number >= 0, but is ${String(weight)}`);
  const scale = options.scale ?? 'tokens';
  if (scale !== 'tokens' && (typeof scale !== 'number' || !Number.isFinite(scale) || scale < 0)) {
    throw new Error(`presto: \`scale\` must be 'tokens' or a finite number >= 0, but is ${JSON.stringify(scale)}`);
  }
  return { weight, scale };
}
