// Per-token KL divergence between two models' next-token distributions on the same inputs: how far
// fine-tuning moved the model at each position (Qi et al. Fig. 3 plots it by response position).
// Differentiable, so it also serves as a regulariser.

import { tf } from '../engine/tf.js';

/**
 * KL(p || q) = sum_v p_v (log p_v - log q_v) at every position, with p = softmax(logitsP) and
 * q = softmax(logitsQ) (both [B, T, V]); log p and log q come from logSoftmax (stable for any
 * logit scale). Returns [B, T] float32: the KL of the distributions predicting token t + 1 at
 * column t, and exactly 0 where attentionMask ([B, T], any dtype; 0 = padding) is 0, even if the
 * logits there are not finite. Gradients flow to both logits arguments.
 */
export function perTokenKL(logitsP: tf.Tensor3D, logitsQ: tf.Tensor3D, attentionMask: tf.Tensor2D): tf.Tensor2D {
  if (logitsP.rank !== 3) throw new Error(`perTokenKL: \`logitsP\` must be [B, T, V], but has shape [${logitsP.shape}]`);
  if (logitsQ.shape.length !== 3 || logitsQ.shape.some((d, i) => d !== logitsP.shape[i])) {
    throw new Error(`perTokenKL: \`logitsQ\` shape [${logitsQ.shape}] does not match \`logitsP\` [${logitsP.shape}]`);
  }
  const [b, t] = logitsP.shape;
  if (attentionMask.rank !== 2 || attentionMask.shape[0] !== b || attentionMask.shape[1] !== t) {
    throw new Error(`perTokenKL: \`attentionMask\` shape [${attentionMask.shape}] must be [${b}, ${t}]`);
  }
  return tf.tidy(() => {
    const real = tf.cast(attentionMask, 'bool');
    // Pads are replaced by zero logits before anything is computed, so non-finite values there
    // can reach neither the result nor (through 0 * NaN) the gradient.
    const real3 = tf.expandDims(real, 2);
    const lp = tf.logSoftmax(tf.where(real3, logitsP, tf.zerosLike(logitsP)));
    const lq = tf.logSoftmax(tf.where(real3, logitsQ, tf.zerosLike(logitsQ)));
    const kl = tf.sum(tf.mul(tf.exp(lp), tf.sub(lp, lq)), -1);
    return tf.where(real, kl, tf.zerosLike(kl)) as tf.Tensor2D;
  });
}
