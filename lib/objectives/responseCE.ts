// The plain SFT loss as a function of logits, for notebooks and objectives that already have them.

import { tf } from '../engine/tf.js';
import { maskedCrossEntropy } from './crossEntropy.js';

/**
 * Token-level mean over the whole batch of -log p(y_t | y_<t) over the positions t where
 * targetMask ([B, T]) is 1; y_t is predicted from logits[:, t - 1] (logits [B, T, V], inputIds
 * [B, T]), so targetMask's column 0 is ignored. Every target token weighs the same, whatever its
 * row. 0 when there are no targets. A thin wrapper of maskedCrossEntropy (the trainer's loss).
 */
export function responseCrossEntropy(logits: tf.Tensor3D, inputIds: tf.Tensor2D, targetMask: tf.Tensor2D): tf.Scalar {
  if (targetMask.rank !== 2 || targetMask.shape[0] !== inputIds.shape[0] || targetMask.shape[1] !== inputIds.shape[1]) {
    throw new Error(`responseCrossEntropy: \`targetMask\` shape [${targetMask.shape}] does not match \`inputIds\` [${inputIds.shape}]`);
  }
  return tf.tidy(() => {
    const ce = maskedCrossEntropy(logits, inputIds, targetMask);
    return tf.div(ce.sum, tf.maximum(ce.count, 1)) as tf.Scalar;
  });
}
