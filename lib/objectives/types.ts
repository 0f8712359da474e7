// The loss interface every training objective implements. An objective sees the model and one
// batch and returns a scalar loss (differentiated by the trainer) plus named scalar metrics.
// Objectives that need more than token ids (reference log-probs for KL/PRESTO, prefill spans for
// augmentation or worst-insertion, per-example weights) read them from `batch.extras`.

import { tf } from '../engine/tf.js';

/** What the trainer needs from a model: a causal LM forward pass. lib/model's models satisfy it. */
export interface CausalLM {
  forward(inputIds: tf.Tensor2D, options?: { attentionMask?: tf.Tensor2D }): { logits: tf.Tensor3D };
}

export interface Batch {
  /** int32 [B, T], right-padded. */
  inputIds: tf.Tensor2D;
  /** int32 [B, T]: 1 for real tokens, 0 for padding. */
  attentionMask: tf.Tensor2D;
  /** float32 [B, T]: 1 where token t is a training target (predicted from position t - 1); column 0 is always 0. */
  lossMask: tf.Tensor2D;
  /** Which source (dataset) each row came from, for per-source metrics. */
  sources: string[];
  /** Objective-specific inputs (tensors are owned and disposed by whoever built the batch). */
  extras: Record<string, unknown>;
}

export interface ObjectiveOutput {
  /** The scalar to minimise. */
  loss: tf.Scalar;
  /** Scalars to log (e.g. token counts, per-source losses); must not be needed for gradients. */
  metrics?: Record<string, tf.Scalar>;
}

export interface Objective {
  /** Shown in logs and checkpoints. */
  name: string;
  /** Runs inside the trainer's gradient tape; every tensor it creates is cleaned up by the trainer. */
  compute(model: CausalLM, batch: Batch): ObjectiveOutput;
}
