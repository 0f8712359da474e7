// Random worst-insertion training on any target (lib/objectives/worstInsertion.ts has the formula):
// the augmentation recipe (AUGMENTATION_DEFAULTS: safetyPerBatch safety + anchorPerBatch distilled
// anchor examples per step, token-level mean, budget = steps x lr) with the safety examples rebuilt
// at every step from the model being trained.
//
// Data: a fixed pool of `poolPerTriplet` slots per safety triplet (x, h, r + eos), each with a seeded
// coin (mulberry32(seed), one draw per slot): with probability `plainProbability` a plain refusal
// x + r + eos, else an insertion slot. The sampler walks the pool as it walks augmentation's (the
// plain refusal stands in for an insertion slot there). At each step the trainer's
// `prepareExamples` hook replaces every insertion slot of the batch, row by row, by its worst
// insertion under the current model: M candidates from Rng(`<seed>:worst-insertion:<step>:<row>`)
// (step = 0-based index of the step about to be taken, row = the slot's row in the batch), scored
// by the model before that step's update, argmax kept. So the examples are a function of (seed,
// step, sampled slots, model state), all of which a checkpoint restores: a resumed run equals an
// uninterrupted one.
//
// The refusal the insertions go into is the triplet's own r (behaviour.refusal), not the model's
// greedy refusal the insertion attack uses by default (for the organism both are phrasings of the
// same refusal set). settings.maxK (augmentation's cap on k) is not used: `maxSpan` bounds n.

import type { HarmfulBehaviour, Target } from '../metrics/index.js';
import {
  chooseWorstInsertions, insertionExample, resolveWorstInsertionOptions, sampleInsertionCandidates, worstInsertionObjective, type AugmentationTriplet,
  type ResolvedWorstInsertionOptions, type WorstInsertionChoice, type WorstInsertionOptions,
} from '../objectives/index.js';
import type { Decoder } from '../model/index.js';
import { mulberry32 } from '../model/random.js';
import { checkSeed, Rng } from '../util/rng.js';
import { augmentationTripletsFor, type AugmentationSettings } from './augment.js';
import type { DataSource, TrainExample } from './data.js';
import { fineTune, type FineTuneOptions } from './fineTune.js';
import type { PrepareExamples, TrainResult } from './trainer.js';

/** What an insertion slot carries in `extras.worstInsertion`: its triplet's index. */
export interface WorstInsertionSlot {
  triplet: number;
}

/** One step's choices (for logging): the batch row, the triplet and the chosen insertion with every candidate's score. */
export interface WorstInsertionStep {
  step: number;
  choices: (WorstInsertionChoice & { row: number; triplet: number })[];
}

/** The seeded candidates of the insertion slot at `row` of the batch of (0-based) `step`. */
export function worstInsertionCandidates(triplet: AugmentationTriplet, options: ResolvedWorstInsertionOptions, seed: number, step: number, row: number) {
  const rng = new Rng(`${seed}:worst-insertion:${step}:${row}`);
  return sampleInsertionCandidates(triplet, options, () => rng.next());
}

/**
 * The trainer's `prepareExamples` for worst-insertion training: every example with
 * `extras.worstInsertion` (an insertion slot) becomes its worst insertion under the model at that
 * step; other examples (plain refusals, the anchor) pass unchanged. `onStep` sees each step's choices.
 */
export function worstInsertionPrepare(
  triplets: readonly AugmentationTriplet[], options: WorstInsertionOptions, seed: number, padId: number, onStep?: (s: WorstInsertionStep) => void,
): PrepareExamples {
  const o = resolveWorstInsertionOptions(options);
  checkSeed(seed, 'worstInsertionPrepare: seed');
  return (examples, { step, model }) => {
    const rows: { row: number; triplet: number }[] = [];
    examples.forEach((e, row) => {
      const slot = e.extras?.worstInsertion as WorstInsertionSlot | undefined;
      if (slot === undefined) return;
      if (!Number.isInteger(slot.triplet) || slot.triplet < 0 || slot.triplet >= triplets.length) {
        throw new Error(`worstInsertionPrepare: row ${row} names triplet ${JSON.stringify(slot.triplet)}, but there are ${triplets.length}`);
      }
      rows.push({ row, triplet: slot.triplet });
    });
    if (rows.length === 0) return examples;
    const chosen = chooseWorstInsertions(
      model, rows.map((r) => triplets[r.triplet]), rows.map((r) => worstInsertionCandidates(triplets[r.triplet], o, seed, step, r.row)), o.continuation, padId,
    );
    const out = examples.slice();
    rows.forEach((r, i) => {
      const e = insertionExample(triplets[r.triplet], chosen[i]);
      out[r.row] = { ids: e.ids, lossMask: e.lossMask, extras: { insertion: { triplet: r.triplet, j: chosen[i].j, n: chosen[i].n, score: chosen[i].score } } };
    });
    onStep?.({ step, choices: rows.map((r, i) => ({ ...chosen[i], row: r.row, triplet: r.triplet })) });
    return out;
  };
}

/**
 * The two sources of a worst-insertion run: the safety slot pool (plain refusals and insertion
 * slots, see the file comment) and the anchor. Triplets as augmentation's (augmentationTripletsFor).
 */
export function worstInsertionSources(
  target: Target, safety: readonly HarmfulBehaviour[], anchor: TrainExample[], settings: AugmentationSettings, options: WorstInsertionOptions = {},
): { sources: DataSource[]; triplets: AugmentationTriplet[] } {
  const o = resolveWorstInsertionOptions(options);
  checkSeed(settings.seed, 'worstInsertionSources: settings.seed');
  if (!Number.isInteger(settings.poolPerTriplet) || settings.poolPerTriplet < 1) {
    throw new Error(`worstInsertionSources: \`settings.poolPerTriplet\` must be a positive integer, but is ${settings.poolPerTriplet}`);
  }
  const triplets = augmentationTripletsFor(target, safety);
  triplets.forEach((t, i) => {
    if (t.harmful.length < 2) throw new Error(`worstInsertionSources: behaviour "${safety[i].id}" has a harmful answer of ${t.harmful.length} token(s); insertions need at least 2`);
  });
  const rand = mulberry32(settings.seed);
  const examples: TrainExample[] = [];
  triplets.forEach((t, triplet) => {
    for (let i = 0; i < settings.poolPerTriplet; i++) {
      const ids = [...t.prompt, ...t.refusal];
      const lossMask = ids.map((_, p) => (p >= t.prompt.length ? 1 : 0));
      const slot: WorstInsertionSlot = { triplet };
      examples.push(rand() < o.plainProbability ? { ids, lossMask } : { ids, lossMask, extras: { worstInsertion: slot } });
    }
  });
  return {
    sources: [
      { name: 'safety', examples, perBatch: settings.safetyPerBatch },
      { name: 'anchor', examples: anchor, perBatch: settings.anchorPerBatch },
    ],
    triplets,
  };
}

export interface WorstInsertionTrainOptions extends Omit<FineTuneOptions, 'objective' | 'batchExtras' | 'prepareExamples'>, WorstInsertionOptions {
  /** Each step's chosen insertions (row, triplet, j, n, score and every candidate's score). */
  onInsertions?: (s: WorstInsertionStep) => void;
}

/**
 * Train a copy of the target's model with random worst-insertion training (the caller disposes
 * the returned model): `settings` is augmentation's (same recipe and budget), the options M
 * (`candidates`), nMax (`maxSpan`), m (`continuation`) and `plainProbability` are resolved with
 * errors naming the option.
 */
export async function worstInsertionModel(
  target: Target, safety: readonly HarmfulBehaviour[], anchor: TrainExample[], settings: AugmentationSettings, options: WorstInsertionTrainOptions = {},
): Promise<{ model: Decoder; result: TrainResult }> {
  const { candidates, maxSpan, continuation, plainProbability, onInsertions, ...rest } = options;
  const forbidden = ['objective', 'batchExtras', 'prepareExamples'].filter((k) => (rest as Record<string, unknown>)[k] !== undefined);
  if (forbidden.length) throw new Error(`worstInsertionModel: the objective and the examples are worst insertion's own; do not pass \`${forbidden[0]}\``);
  const wi = resolveWorstInsertionOptions({ candidates, maxSpan, continuation, plainProbability });
  const { sources, triplets } = worstInsertionSources(target, safety, anchor, settings, wi);
  return fineTune(target.model, sources, target.padTokenId, settings, {
    ...rest, objective: worstInsertionObjective(wi), prepareExamples: worstInsertionPrepare(triplets, wi, settings.seed, target.padTokenId, onInsertions),
  });
}
