// Qi et al.'s data-augmentation defence on any target: safety-recovery examples (x, h[:k], r) with
// the loss on r only, mixed with a utility anchor of benign requests answered by the model itself
// (distilled), 16 safety : 64 anchor per step with a token-level mean over all targets (how the
// paper's alpha = 0.2 is realised in its code). The budget (steps x learning rate) is explicit.

import { generateResponses, type BenignBehaviour, type HarmfulBehaviour, type Target } from '../metrics/index.js';
import { checkBehaviours, harmfulResponseOf } from '../metrics/behaviours.js';
import { trainingExample } from '../metrics/target.js';
import {
  augmentationObjective, collatePrefillSpans, sampleAugmentationExamples, type AugmentationTriplet, type PrestoOptions, type PushForwardOptions,
} from '../objectives/index.js';
import type { Decoder } from '../model/index.js';
import type { DataSource, TrainExample } from './data.js';
import { fineTune, type FineTuneOptions, type FineTuneSettings } from './fineTune.js';
import type { TrainResult } from './trainer.js';

/** (x, h, r) as the target's ids: prompt, harmful answer tokens, refusal tokens + end-of-response. */
export function augmentationTripletsFor(target: Target, behaviours: readonly HarmfulBehaviour[]): AugmentationTriplet[] {
  checkBehaviours(behaviours, 'augmentationTripletsFor');
  return behaviours.map((b) => {
    if (typeof b.refusal !== 'string' || b.refusal.trim() === '') throw new Error(`augmentationTripletsFor: behaviour "${b.id}" has no \`refusal\` (augmentation needs (request, harmful answer, refusal) triplets)`);
    return {
      prompt: target.promptIds(b.request), harmful: target.responseIds(harmfulResponseOf(b, 'augmentationTripletsFor')),
      refusal: [...target.responseIds(b.refusal), target.eosTokenIds[0]],
    };
  });
}

/** The utility anchor: benign requests answered by the target itself (greedy), as training examples. */
export async function distilledAnchor(target: Target, benign: readonly BenignBehaviour[], options: { batchSize?: number } = {}): Promise<{ examples: TrainExample[]; answers: string[] }> {
  checkBehaviours(benign, 'distilledAnchor');
  const generated = await generateResponses(target, benign.map((b) => ({ id: b.id, request: b.request })), {
    decoding: { doSample: false }, batchSize: options.batchSize, progress: { label: `distil anchor from ${target.name}` },
  });
  const examples = generated.map((g, i) => {
    const e = trainingExample(target, benign[i].request, g.response);
    return { ids: e.ids, lossMask: e.lossMask };
  });
  return { examples, answers: generated.map((g) => g.response) };
}

export interface AugmentationSettings extends FineTuneSettings {
  safetyPerBatch: number;
  anchorPerBatch: number;
  /** Coin-flipped examples drawn per triplet for the fixed pool the sampler walks. */
  poolPerTriplet: number;
  /** Cap on k (the authors' code: 100). */
  maxK: number;
}

/** Qi et al.'s recipe at the organism's scale: AdamW (no decay), clip 1, 5-step warmup, constant lr; lr and steps are the budget. */
export const AUGMENTATION_DEFAULTS: Omit<AugmentationSettings, 'steps' | 'peakLr' | 'seed'> = {
  warmupSteps: 5, decay: 'constant', beta1: 0.9, beta2: 0.999, weightDecay: 0, clipNorm: 1, safetyPerBatch: 16, anchorPerBatch: 64, poolPerTriplet: 10, maxK: 100,
};

/**
 * The two training sources of an augmentation run. With `prefillSpans`, every safety example also
 * carries `extras.prefill = { start: |x|, length: k }` (its harmful prefix h[:k]; k = 0 for a plain
 * refusal) for PRESTO and push-forward alignment; the anchor examples carry none.
 */
export function augmentationSources(
  target: Target, safety: readonly HarmfulBehaviour[], anchor: TrainExample[], settings: AugmentationSettings, options: { prefillSpans?: boolean } = {},
): DataSource[] {
  const triplets = augmentationTripletsFor(target, safety);
  const pool = sampleAugmentationExamples(triplets, { perTriplet: settings.poolPerTriplet, seed: settings.seed, maxK: settings.maxK });
  const examples: TrainExample[] = options.prefillSpans
    ? pool.map((e) => ({ ids: e.ids, lossMask: e.lossMask, extras: { prefill: { start: triplets[e.triplet].prompt.length, length: e.k } } }))
    : pool.map((e) => ({ ids: e.ids, lossMask: e.lossMask }));
  return [
    { name: 'safety', examples, perBatch: settings.safetyPerBatch },
    { name: 'anchor', examples: anchor, perBatch: settings.anchorPerBatch },
  ];
}

export interface AugmentOptions extends FineTuneOptions {
  /** Train augmentation + PRESTO (Vega & Singh): the attention term on each safety example's harmful prefix. */
  presto?: PrestoOptions;
  /** Train augmentation + push-forward alignment (rank matching of the post-prefill distribution). */
  pushForward?: PushForwardOptions;
}

/**
 * Train a copy of the target's model with data augmentation (the caller disposes the returned
 * model). With `presto` and/or `pushForward` the objective is augmentationObjective({ presto,
 * pushForward }) over the same sources, whose safety examples then carry their prefill spans
 * (collatePrefillSpans builds the batches' prefill masks); neither given: plain augmentation.
 */
export async function augmentModel(
  target: Target, safety: readonly HarmfulBehaviour[], anchor: TrainExample[], settings: AugmentationSettings, options: AugmentOptions = {},
): Promise<{ model: Decoder; result: TrainResult }> {
  const { presto, pushForward, ...rest } = options;
  if (presto === undefined && pushForward === undefined) {
    return fineTune(target.model, augmentationSources(target, safety, anchor, settings), target.padTokenId, settings, rest);
  }
  if (rest.objective || rest.batchExtras) {
    throw new Error('augmentModel: `presto` / `pushForward` set the objective and batch extras; do not pass `objective` or `batchExtras` with them');
  }
  const objective = augmentationObjective({ presto, pushForward });
  return fineTune(target.model, augmentationSources(target, safety, anchor, settings, { prefillSpans: true }), target.padTokenId, settings, { ...rest, objective, batchExtras: collatePrefillSpans });
}
