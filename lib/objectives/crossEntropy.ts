// Next-token cross-entropy on masked tokens, with the token-level mean: every target token in the
// batch weighs the same, whichever data set its row came from. Batches mixed by composition (e.g.
// Qi et al.'s 16 safety + 64 utility-anchor examples per step) therefore realise the mixing weight
// through token counts, exactly as concatenating all per-token losses and averaging does.

import { crossEntropy, tf } from '../engine/index.js';
import { Batch, CausalLM, Objective } from './types.js';

/**
 * log p(inputIds[:, t+1] | inputIds[:, :t+1]) for t = 0..T-2, from logits [B, T, V]: shape [B, T-1].
 * Computed as logit[target] - logsumexp(logits) by lib/engine's fused crossEntropy (one pass forward,
 * softmax - onehot backward), which is stable and avoids materialising a one-hot [B, T-1, V].
 */
export function targetLogProbs(logits: tf.Tensor3D, inputIds: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, t, v] = logits.shape;
    if (inputIds.shape[0] !== b || inputIds.shape[1] !== t) {
      throw new Error(`targetLogProbs: \`inputIds\` shape [${inputIds.shape}] does not match logits [${logits.shape}]`);
    }
    const predicting = tf.slice(logits, [0, 0, 0], [b, t - 1, v]); // [B, T-1, V]
    const targets = tf.cast(tf.slice(inputIds, [0, 1], [b, t - 1]), 'int32'); // [B, T-1]
    return tf.neg(crossEntropy(predicting, targets)) as tf.Tensor2D;
  });
}

export interface MaskedCrossEntropy {
  /** Sum over target tokens of -log p. */
  sum: tf.Scalar;
  /** Number of target tokens (sum of the loss mask). */
  count: tf.Scalar;
  /** Per-row sums of -log p over its targets [B]. */
  perRow: tf.Tensor1D;
  /** Per-row target counts [B]. */
  rowCount: tf.Tensor1D;
}

/** Cross-entropy pieces for targets where lossMask[:, 1:] is 1. */
export function maskedCrossEntropy(logits: tf.Tensor3D, inputIds: tf.Tensor2D, lossMask: tf.Tensor2D): MaskedCrossEntropy {
  return tf.tidy(() => {
    const [b, t] = inputIds.shape;
    const mask = tf.cast(tf.slice(lossMask, [0, 1], [b, t - 1]), 'float32'); // [B, T-1]
    const nll = tf.mul(tf.neg(targetLogProbs(logits, inputIds)), mask);
    const perRow = tf.sum(nll, 1) as tf.Tensor1D;
    const rowCount = tf.sum(mask, 1) as tf.Tensor1D;
    return { sum: tf.sum(perRow) as tf.Scalar, count: tf.sum(rowCount) as tf.Scalar, perRow, rowCount };
  });
}

/** Token-level mean of -log p over the masked targets; a batch without targets is an error. */
export function crossEntropyLoss(model: CausalLM, batch: Batch): { loss: tf.Scalar; tokens: tf.Scalar; ce: MaskedCrossEntropy } {
  const { logits } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask });
  const ce = maskedCrossEntropy(logits, batch.inputIds, batch.lossMask);
  // max(count, 1) keeps an all-masked batch finite (loss 0) instead of NaN; the trainer rejects such batches earlier.
  const loss = tf.div(ce.sum, tf.maximum(ce.count, 1)) as tf.Scalar;
  return { loss, tokens: ce.count, ce };
}

/**
 * Per-source token-mean losses `loss/<source>` of a mixed batch (none when the batch has a single
 * source), so mixed batches show each data set's loss separately.
 */
export function perSourceLosses(ce: MaskedCrossEntropy, sources: readonly string[]): Record<string, tf.Scalar> {
  const metrics: Record<string, tf.Scalar> = {};
  const names = [...new Set(sources)];
  if (names.length > 1) {
    for (const name of names) {
      const select = tf.tensor1d(sources.map((s) => (s === name ? 1 : 0)), 'float32');
      metrics[`loss/${name}`] = tf.div(tf.sum(tf.mul(ce.perRow, select)), tf.maximum(tf.sum(tf.mul(ce.rowCount, select)), 1)) as tf.Scalar;
    }
  }
  return metrics;
}

/** Standard SFT / pretraining objective: cross-entropy on lossMask tokens, token-level mean. */
export function crossEntropyObjective(): Objective {
  return {
    name: 'cross_entropy',
    compute(model, batch) {
      const { loss, tokens, ce } = crossEntropyLoss(model, batch);
      return { loss, metrics: { tokens, ...perSourceLosses(ce, batch.sources) } };
    },
  };
}
