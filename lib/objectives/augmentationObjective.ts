// The augmentation objective with Vega & Singh's additions: the token-mean response cross-entropy
// of Qi et al.'s augmentation (safety-recovery examples + utility anchor), plus optionally
//   PRESTO:        weight * scale * prestoTerm(attentions, prefillMask, attentionMask)   (presto.ts)
//   push-forward:  weight * pushForwardTerm(logits, prefill spans, { form, topK })       (pushForward.ts)
//                  (normalise 'tokens': times (prefilled examples) / (target tokens))
// from one forward pass (with attention probabilities when PRESTO is on: lib/model's Decoder then
// runs its eager attention, whose probabilities are differentiable; the fused kernel path, which
// returns none, is only taken without outputAttentions).
//
// Each batch needs `extras.prefillMask` and `extras.prefillSpans` (collatePrefillSpans as the
// trainer's batchExtras; examples carry `extras.prefill = { start, length }`).

import { tf } from '../engine/tf.js';
import { maskedCrossEntropy, perSourceLosses } from './crossEntropy.js';
import type { PrefillSpan } from './prefillSpans.js';
import { prestoTerm, resolvePrestoOptions, type PrestoOptions } from './presto.js';
import { pushForwardTerm, resolvePushForwardOptions, type PushForwardOptions } from './pushForward.js';
import type { Batch, CausalLM, Objective } from './types.js';

/** A causal LM whose forward can return per-layer attention probabilities (lib/model's Decoder). */
export interface AttentionCausalLM extends CausalLM {
  forward(inputIds: tf.Tensor2D, options?: { attentionMask?: tf.Tensor2D; outputAttentions?: boolean }): { logits: tf.Tensor3D; attentions?: tf.Tensor4D[] };
}

export interface AugmentationObjectiveOptions {
  /** Add PRESTO's attention term. */
  presto?: PrestoOptions;
  /** Add the push-forward (rank matching) term. */
  pushForward?: PushForwardOptions;
}

function prefillExtras(batch: Batch, where: string): { prefillMask: tf.Tensor2D; prefillSpans: (PrefillSpan | null)[] } {
  const { prefillMask, prefillSpans } = batch.extras as { prefillMask?: unknown; prefillSpans?: unknown };
  const [B, T] = batch.inputIds.shape;
  if (!(prefillMask instanceof tf.Tensor) || prefillMask.rank !== 2 || prefillMask.shape[0] !== B || prefillMask.shape[1] !== T || !Array.isArray(prefillSpans) || prefillSpans.length !== B) {
    throw new Error(`${where}: the batch needs \`extras.prefillMask\` [${B}, ${T}] and \`extras.prefillSpans\` (${B} entries); pass collatePrefillSpans as the trainer's batchExtras and give safety examples \`extras.prefill\``);
  }
  return { prefillMask: prefillMask as tf.Tensor2D, prefillSpans: prefillSpans as (PrefillSpan | null)[] };
}

/**
 * Cross-entropy on the loss-mask tokens (token-level mean, as crossEntropyObjective) plus PRESTO
 * and/or push-forward terms. Metrics: tokens, loss/ce, per-source losses, presto (prestoTerm, before
 * weight and scale), push_forward (the term before its weight).
 */
export function augmentationObjective(options: AugmentationObjectiveOptions = {}): Objective {
  const presto = options.presto === undefined ? undefined : resolvePrestoOptions(options.presto);
  const push = options.pushForward === undefined ? undefined : resolvePushForwardOptions(options.pushForward);
  const parts = ['augmentation'];
  if (presto) parts.push(`presto(weight=${presto.weight},scale=${presto.scale})`);
  if (push) parts.push(`push_forward(weight=${push.weight},form=${push.form}${push.form === 'listmle' ? `,topK=${push.topK}` : ''}${push.normalise === 'tokens' ? ',normalise=tokens' : ''})`);
  const name = parts.join('+');
  return {
    name,
    compute(model, batch) {
      const extras = presto || push ? prefillExtras(batch, name) : undefined;
      const out = (model as AttentionCausalLM).forward(batch.inputIds, { attentionMask: batch.attentionMask, ...(presto ? { outputAttentions: true } : {}) });
      const ce = maskedCrossEntropy(out.logits, batch.inputIds, batch.lossMask);
      const count = tf.maximum(ce.count, 1);
      const ceLoss = tf.div(ce.sum, count) as tf.Scalar;
      let loss: tf.Tensor = ceLoss;
      const metrics: Record<string, tf.Scalar> = { tokens: ce.count, 'loss/ce': ceLoss, ...perSourceLosses(ce, batch.sources) };
      if (presto && extras) {
        if (!out.attentions) throw new Error(`${name}: the model returned no attentions for outputAttentions: true (PRESTO needs a model like lib/model's Decoder)`);
        const term = prestoTerm(out.attentions, extras.prefillMask, batch.attentionMask);
        const scale = presto.scale === 'tokens' ? tf.div(2, count) : tf.scalar(presto.scale);
        loss = tf.add(loss, tf.mul(tf.mul(term, scale), presto.weight));
        metrics.presto = term;
      }
      if (push && extras) {
        const term = pushForwardTerm(out.logits, extras.prefillSpans, push);
        const prefilled = extras.prefillSpans.filter((s) => s !== null && s.length > 0).length;
        const normalised = push.normalise === 'tokens' ? tf.mul(term, tf.div(prefilled, count)) : term;
        loss = tf.add(loss, tf.mul(normalised, push.weight));
        metrics.push_forward = term;
      }
      return { loss: loss as tf.Scalar, metrics };
    },
  };
}

/** Augmentation + PRESTO (Vega & Singh's defence): augmentationObjective({ presto: options }). */
export function prestoObjective(options: PrestoOptions = {}): Objective {
  return augmentationObjective({ presto: options });
}

/** Augmentation + push-forward alignment: augmentationObjective({ pushForward: options }). */
export function pushForwardObjective(options: PushForwardOptions = {}): Objective {
  return augmentationObjective({ pushForward: options });
}
