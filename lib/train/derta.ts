// DeRTa (Yuan et al. 2024; lib/objectives/derta.ts has the loss) on any target, with the
// augmentation recipe's utility anchor and budget, so it compares with augmentation at matched
// settings. Per step: safetyPerBatch safety rows, of which round(rtoShare * safetyPerBatch) RTO
// rows (x + h + eos with their RTO span) and the rest MLE-prefix rows (x + h[:k] + r + eos, k = 0 for
// one in three, else k ~ U{1..min(maxK, |h|) - 1}; a seeded pool of poolPerTriplet per triplet),
// plus anchorPerBatch distilled anchor rows; one token-level mean over MLE targets and RTO positions.
// The authors' data: helpful (WizardLM) + 3000 RTO + 3000 MLE-prefix rows, i.e. rtoShare 0.5.

import type { HarmfulBehaviour, Target } from '../metrics/index.js';
import {
  collateRtoSpans, DERTA_PREFIX_PROBABILITY, dertaObjective, resolveDertaOptions, rtoExample, rtoKeptPositions, sampleAugmentationExamples, type DertaOptions,
} from '../objectives/index.js';
import type { Decoder } from '../model/index.js';
import { checkSeed, Rng } from '../util/rng.js';
import { augmentationTripletsFor, type AugmentationSettings } from './augment.js';
import type { DataSource, TrainExample } from './data.js';
import { fineTune, type FineTuneOptions } from './fineTune.js';
import type { TrainResult } from './trainer.js';

/** How many of safetyPerBatch rows are RTO rows: round(rtoShare * safetyPerBatch), at least 1 and leaving at least 1 MLE-prefix row. */
export function dertaRtoPerBatch(safetyPerBatch: number, rtoShare: number): number {
  if (!Number.isInteger(safetyPerBatch) || safetyPerBatch < 2) throw new Error(`derta: \`safetyPerBatch\` must be an integer >= 2 (MLE-prefix and RTO rows), but is ${safetyPerBatch}`);
  return Math.min(safetyPerBatch - 1, Math.max(1, Math.round(rtoShare * safetyPerBatch)));
}

/** The three sources of a DeRTa run: 'safety' (MLE with a harmful prefix), 'rto' and 'anchor' (see the file comment). */
export function dertaSources(
  target: Target, safety: readonly HarmfulBehaviour[], anchor: TrainExample[], settings: AugmentationSettings, options: DertaOptions = {},
): DataSource[] {
  const o = resolveDertaOptions(options);
  checkSeed(settings.seed, 'dertaSources: settings.seed');
  const rtoPerBatch = dertaRtoPerBatch(settings.safetyPerBatch, o.rtoShare);
  if (!Number.isInteger(settings.poolPerTriplet) || settings.poolPerTriplet < 1) {
    throw new Error(`dertaSources: \`settings.poolPerTriplet\` must be a positive integer, but is ${settings.poolPerTriplet}`);
  }
  const triplets = augmentationTripletsFor(target, safety);
  const pool = sampleAugmentationExamples(triplets, {
    perTriplet: settings.poolPerTriplet, seed: settings.seed, maxK: settings.maxK, prefixProbability: DERTA_PREFIX_PROBABILITY, kInclusiveUpper: false,
  });
  const eos = target.eosTokenIds[0];
  const V = target.model.config.vocabSize;
  if (o.refusalToken !== null && o.refusalToken >= V) throw new Error(`derta: \`refusalToken\` ${o.refusalToken} is not in the model's vocabulary [0, ${V})`);
  const rto: TrainExample[] = [];
  triplets.forEach((t, i) => {
    const token = o.refusalToken ?? t.refusal[0];
    // Every position kept: one example per triplet; a subset: poolPerTriplet seeded subsets.
    const copies = o.keepFraction >= 1 ? 1 : settings.poolPerTriplet;
    for (let c = 0; c < copies; c++) {
      const rng = new Rng(`${settings.seed}:derta-rto:${i}:${c}`);
      const keep = o.keepFraction >= 1 ? undefined : rtoKeptPositions(t.harmful.length + 1, o.keepFraction, () => rng.next());
      rto.push(rtoExample(t.prompt, t.harmful, eos, token, keep));
    }
  });
  return [
    { name: 'safety', examples: pool.map((e) => ({ ids: e.ids, lossMask: e.lossMask })), perBatch: settings.safetyPerBatch - rtoPerBatch },
    { name: 'rto', examples: rto, perBatch: rtoPerBatch },
    { name: 'anchor', examples: anchor, perBatch: settings.anchorPerBatch },
  ];
}

export interface DertaTrainOptions extends Omit<FineTuneOptions, 'objective' | 'batchExtras'>, DertaOptions {}

/**
 * Train a copy of the target's model with DeRTa (MLE with harmful prefixes + RTO) and the utility
 * anchor (the caller disposes the returned model). `settings` is augmentation's (same recipe and
 * budget); options `rtoShare`, `keepFraction`, `refusalToken` (resolveDertaOptions).
 */
export async function dertaModel(
  target: Target, safety: readonly HarmfulBehaviour[], anchor: TrainExample[], settings: AugmentationSettings, options: DertaTrainOptions = {},
): Promise<{ model: Decoder; result: TrainResult }> {
  const { rtoShare, keepFraction, refusalToken, ...rest } = options;
  const forbidden = ['objective', 'batchExtras'].filter((k) => (rest as Record<string, unknown>)[k] !== undefined);
  if (forbidden.length) throw new Error(`dertaModel: the objective and batch extras are DeRTa's own; do not pass \`${forbidden[0]}\``);
  const sources = dertaSources(target, safety, anchor, settings, { rtoShare, keepFraction, refusalToken });
  return fineTune(target.model, sources, target.padTokenId, settings, { ...rest, objective: dertaObjective(), batchExtras: collateRtoSpans });
}
