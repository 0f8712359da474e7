// Push-forward alignment (PFA; Vega & Singh, "Matching Ranks Over Probability Yields Truly Deep
// Safety Alignment"): after a harmful prefill the model should rank its next tokens as it ranks its
// first response token for the bare request, whose top tokens are refusals. No code is published;
// this is our formulation.
//
// For each safety-recovery example (x, h[:k], r) with k > 0, in the same right-padded row
// x + h[:k] + r (prefill span [s, s + k), s = |x|):
//   z_bare = logits at position s - 1      the first response token's distribution for the bare
//                                          request x (the model is causal, so this is exactly the
//                                          distribution it has after x alone);
//   z_post = logits at position s + k - 1  the distribution after x + h[:k], predicting the first
//                                          refusal token;
//   target = stopgrad(z_bare): the model's own bare distribution is a fixed target (no gradient
//                                          flows into it; it moves only between steps).
//
// form 'kl' (default):   L = KL(softmax(target) || softmax(z_post))
//                          = sum_v p_bare(v) (log p_bare(v) - log p_post(v)).
// form 'listmle':        rank matching by the Plackett-Luce top-K likelihood. pi_1..pi_K are the
//                        K most likely tokens of the bare distribution, in order. Under z,
//                          NLL(pi | z) = sum_{i=1..K} [ logsumexp_{v not in {pi_1..pi_(i-1)}} z_v - z_(pi_i) ],
//                        the negative log-probability that drawing without replacement from
//                        softmax(z) yields pi_1, ..., pi_K first (the full vocabulary competes at
//                        each step, so the top-K are pushed above every other token, in order; K = 1
//                        is the cross-entropy on the bare argmax). The loss is the excess over the
//                        target's own value, L = NLL(pi | z_post) - NLL(pi | target): 0 when the
//                        two distributions match (as KL = cross-entropy - entropy), negative when
//                        the post-prefill distribution orders pi more sharply than the bare one;
//                        its gradient is ListMLE's. Only the order of the top-K and their margin
//                        over the rest matter, not the bare probabilities.
// Both are averaged over the batch's examples with a prefill (0 when there is none) and added to
// the token-mean response cross-entropy with a weight (augmentationObjective({ pushForward })).
// normalise 'examples' (default) adds weight * that mean; 'tokens' adds weight * (sum over the
// prefilled examples) / (target tokens of the batch), the cross-entropy's own normalisation (and
// PRESTO's), so each prefilled example weighs like one more target token. Why both: with
// 'examples' the term is per example while the cross-entropy is per token, so at weight 1 it
// outweighs the cross-entropy by about the number of target tokens per example (on the organism
// ~100x at the start of training; notebook 08 shows what that does to utility).
// Plain refusals (k = 0) would compare a distribution with itself and are skipped; utility-anchor
// rows have no span.

import { tf } from '../engine/tf.js';
import { stopGradient } from './constrainedSFT.js';
import type { PrefillSpan } from './prefillSpans.js';

export type PushForwardForm = 'kl' | 'listmle';
export type PushForwardNormalise = 'examples' | 'tokens';

export interface PushForwardOptions {
  /** Multiplies the term added to the cross-entropy. Default 1. */
  weight?: number;
  /** 'kl' (default) or 'listmle' (see the header). */
  form?: PushForwardForm;
  /** K of 'listmle': how many of the bare distribution's top tokens are ranked. Default 20 (RAP's list). */
  topK?: number;
  /** 'examples' (default): the mean over prefilled examples; 'tokens': their sum over the batch's target tokens (see the header). */
  normalise?: PushForwardNormalise;
}

export interface ResolvedPushForwardOptions {
  weight: number;
  form: PushForwardForm;
  topK: number;
  normalise: PushForwardNormalise;
}

/** A very negative logit offset that removes an entry from a logsumexp (finite, so gradients stay 0, not NaN). */
const EXCLUDED = -1e30;

/** Defaults filled in and checked; errors name the option. */
export function resolvePushForwardOptions(options: PushForwardOptions = {}): ResolvedPushForwardOptions {
  if (typeof options !== 'object' || options === null) throw new Error(`pushForward: options must be an object, but are ${String(options)}`);
  for (const key of Object.keys(options)) if (!['weight', 'form', 'topK', 'normalise'].includes(key)) throw new Error(`pushForward: unknown option \`${key}\` (known: weight, form, topK, normalise)`);
  const weight = options.weight ?? 1;
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0) throw new Error(`pushForward: \`weight\` must be a finite number >= 0, but is ${String(weight)}`);
  const form = options.form ?? 'kl';
  if (form !== 'kl' && form !== 'listmle') throw new Error(`pushForward: \`form\` must be 'kl' or 'listmle', but is ${JSON.stringify(form)}`);
  const topK = options.topK ?? 20;
  if (typeof topK !== 'number' || !Number.isInteger(topK) || topK < 1) throw new Error(`pushForward: \`topK\` must be an integer >= 1, but is ${String(topK)}`);
  const normalise = options.normalise ?? 'examples';
  if (normalise !== 'examples' && normalise !== 'tokens') throw new Error(`pushForward: \`normalise\` must be 'examples' or 'tokens', but is ${JSON.stringify(normalise)}`);
  return { weight, form, topK, normalise };
}

/**
 * Plackett-Luce top-K negative log-likelihood per row [n] of the orders `order` ([n][K] token ids)
 * under logits z [n, V]: sum_i logsumexp(z over the vocabulary minus pi_1..pi_(i-1)) - z_(pi_i).
 * The remaining set at step i is {pi_i..pi_K} plus every token outside the top K, so its
 * logsumexp is logaddexp(suffix logsumexp of the top-K logits, logsumexp of the rest): stable even
 * when the top tokens hold almost all the mass.
 */
export function plackettLuceNLL(z: tf.Tensor2D, order: readonly (readonly number[])[]): tf.Tensor1D {
  const [n, V] = z.shape;
  const K = order[0]?.length ?? 0;
  if (order.length !== n || K === 0 || order.some((r) => r.length !== K)) throw new Error(`plackettLuceNLL: \`order\` must be [${n}][K] with K >= 1`);
  return tf.tidy(() => {
    const flat = order.flatMap((row, i) => row.map((id) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`plackettLuceNLL: token id ${id} is not in [0, ${V})`);
      return i * V + id;
    }));
    const zTop = tf.reshape(tf.gather(tf.reshape(z, [n * V]), tf.tensor1d(flat, 'int32')), [n, K]);
    const restOffset = new Float32Array(n * V);
    flat.forEach((i) => (restOffset[i] = EXCLUDED));
    const lseRest = tf.logSumExp(tf.add(z, tf.tensor2d(restOffset, [n, V])), 1, true); // [n, 1]
    const tri = new Float32Array(K * K);
    for (let i = 0; i < K; i++) for (let j = 0; j < K; j++) if (j < i) tri[i * K + j] = EXCLUDED;
    const suffix = tf.logSumExp(tf.add(tf.reshape(zTop, [n, 1, K]), tf.tensor3d(tri, [1, K, K])), 2); // [n, K]
    const remaining = tf.logSumExp(tf.stack([suffix, tf.tile(lseRest, [1, K])], 2), 2); // [n, K]
    return tf.sum(tf.sub(remaining, zTop), 1) as tf.Tensor1D;
  });
}

/**
 * The push-forward loss, averaged over rows: post-prefill logits z_post [n, V] toward
 * stopgrad(bare logits) [n, V] (no gradient reaches `bareLogits`). See the header for the forms.
 */
export function pushForwardLoss(postLogits: tf.Tensor2D, bareLogits: tf.Tensor2D, options: PushForwardOptions = {}): tf.Scalar {
  const o = resolvePushForwardOptions(options);
  if (postLogits.rank !== 2 || bareLogits.rank !== 2 || postLogits.shape[0] !== bareLogits.shape[0] || postLogits.shape[1] !== bareLogits.shape[1]) {
    throw new Error(`pushForwardLoss: \`postLogits\` [${postLogits.shape}] and \`bareLogits\` [${bareLogits.shape}] must both be [n, V]`);
  }
  const [n, V] = postLogits.shape;
  if (n === 0) return tf.scalar(0);
  return tf.tidy(() => {
    const target = stopGradient(bareLogits);
    if (o.form === 'kl') {
      const logBare = tf.sub(target, tf.logSumExp(target, 1, true));
      const logPost = tf.sub(postLogits, tf.logSumExp(postLogits, 1, true));
      return tf.div(tf.sum(tf.mul(tf.exp(logBare), tf.sub(logBare, logPost))), n) as tf.Scalar;
    }
    const order = tf.topk(target, Math.min(o.topK, V), true).indices.arraySync() as number[][];
    return tf.div(tf.sum(tf.sub(plackettLuceNLL(postLogits, order), plackettLuceNLL(target, order))), n) as tf.Scalar;
  });
}

/** Flat [B*T] row indices of the bare (s - 1) and post-prefill (s + k - 1) positions of the rows with k > 0. */
export function pushForwardPositions(spans: readonly (PrefillSpan | null)[], width: number): { bare: number[]; post: number[]; rows: number[] } {
  const bare: number[] = [];
  const post: number[] = [];
  const rows: number[] = [];
  spans.forEach((s, b) => {
    if (!s || s.length === 0) return;
    if (s.start < 1 || s.start + s.length > width) throw new Error(`pushForwardPositions: row ${b}'s span { start: ${s.start}, length: ${s.length} } is outside its ${width} columns`);
    bare.push(b * width + s.start - 1);
    post.push(b * width + s.start + s.length - 1);
    rows.push(b);
  });
  return { bare, post, rows };
}

/**
 * The push-forward term of a batch: logits [B, T, V] of right-padded rows and each row's prefill
 * span (or null); the mean loss over the rows with a prefill, 0 when there are none.
 */
export function pushForwardTerm(logits: tf.Tensor3D, spans: readonly (PrefillSpan | null)[], options: PushForwardOptions = {}): tf.Scalar {
  const [B, T, V] = logits.shape;
  if (spans.length !== B) throw new Error(`pushForwardTerm: ${spans.length} spans for ${B} rows`);
  const { bare, post } = pushForwardPositions(spans, T);
  if (bare.length === 0) return tf.scalar(0);
  return tf.tidy(() => {
    const flat = tf.reshape(logits, [B * T, V]);
    const pick = (idx: number[]) => tf.gather(flat, tf.tensor1d(idx, 'int32')) as tf.Tensor2D;
    return pushForwardLoss(pick(post), pick(bare), options);
  });
}
