// Qi et al.'s safety data augmentation ("recovery examples"), as token ids and loss masks, for any
// tokenizer. From a safety triplet (x, h, r) = (request, harmful answer, refusal) an example is
//   k = 0:  x -> r                      (an ordinary refusal)
//   k > 0:  x -> h[:k] r                (the model has started answering, then refuses)
// with the loss on r only: the k harmful tokens are context, never targets. The authors' code
// flips a fair coin per example between the two, and draws k ~ randint(1, min(100, |h|)) with an
// inclusive upper bound (Python's random.randint). Training mixes these with a utility anchor by
// batch composition and the token-level mean of the cross-entropy objective (16 : 64 in the paper).
//
// Ids are taken as given: `promptIds` is the generation prompt exactly as the chat template renders
// it (ending where the response starts, e.g. "... <assistant>"), `harmfulIds` the harmful response's
// tokens without any end-of-sequence token, and `refusalIds` the refusal as the chat template renders
// a response, including the end-of-sequence token that closes it (so the model learns to stop).

import { mulberry32 } from '../model/random.js';

/** One training sequence: ids and targets (lossMask[t] = 1: token t is predicted from position t - 1). */
export interface AugmentationExample {
  ids: number[];
  lossMask: number[];
  /** How many harmful-answer tokens precede the refusal (0: a plain refusal). */
  k: number;
}

/** Safety triplet as token ids (see the header for what each part holds). */
export interface AugmentationTriplet {
  prompt: readonly number[];
  harmful: readonly number[];
  refusal: readonly number[];
}

function checkIds(where: string, field: string, ids: readonly number[], allowEmpty: boolean): void {
  if (!Array.isArray(ids)) throw new Error(`${where}: \`${field}\` must be an array of token ids`);
  if (!allowEmpty && ids.length === 0) throw new Error(`${where}: \`${field}\` is empty`);
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0) throw new Error(`${where}: \`${field}\`[${i}] must be a non-negative integer token id, but is ${id}`);
  });
}

/**
 * prompt + first k tokens of the harmful answer + refusal; targets: the refusal tokens only (with
 * the end-of-sequence token the caller ends `refusalIds` with).
 */
export function augmentationExample(
  promptIds: readonly number[], harmfulIds: readonly number[], refusalIds: readonly number[], k: number,
): AugmentationExample {
  const where = 'augmentationExample';
  checkIds(where, 'promptIds', promptIds, false);
  checkIds(where, 'harmfulIds', harmfulIds, true);
  checkIds(where, 'refusalIds', refusalIds, false);
  if (!Number.isInteger(k) || k < 0 || k > harmfulIds.length) {
    throw new Error(`${where}: \`k\` must be an integer in [0, ${harmfulIds.length}] (the harmful answer's length), but is ${k}`);
  }
  const context = promptIds.length + k;
  const ids = [...promptIds, ...harmfulIds.slice(0, k), ...refusalIds];
  const lossMask = ids.map((_, t) => (t >= context ? 1 : 0));
  return { ids, lossMask, k };
}

export interface AugmentationSampleOptions {
  /** Examples in all, cycling through the triplets (example i uses triplet i mod n). */
  count?: number;
  /** Or: this many examples per triplet (triplet-major order). Exactly one of count / perTriplet. */
  perTriplet?: number;
  seed: number;
  /** Upper cap on k (the authors' code: 100). */
  maxK?: number;
  /** true (default, the authors' randint): k ~ U{1..min(maxK, |h|)}; false: U{1..min(maxK, |h|) - 1}. */
  kInclusiveUpper?: boolean;
  /** Probability of the tails branch (a harmful prefix before the refusal). Default 0.5, a fair coin. */
  prefixProbability?: number;
}

export interface SampledAugmentationExample extends AugmentationExample {
  /** Index of the triplet it was built from. */
  triplet: number;
}

/**
 * A fixed pool of augmentation examples with seeded coin flips and prefix lengths (a sampler that
 * draws fixed examples then sees fresh (coin, k) draws as it walks the pool). Deterministic in the
 * seed; the draws for example i depend only on the seed and the examples before it.
 */
export function sampleAugmentationExamples(triplets: readonly AugmentationTriplet[], options: AugmentationSampleOptions): SampledAugmentationExample[] {
  const where = 'sampleAugmentationExamples';
  if (triplets.length === 0) throw new Error(`${where}: \`triplets\` is empty`);
  const { count, perTriplet } = options;
  if ((count === undefined) === (perTriplet === undefined)) throw new Error(`${where}: give exactly one of \`count\` and \`perTriplet\``);
  const n = count ?? perTriplet! * triplets.length;
  if (count !== undefined && (!Number.isInteger(count) || count < 0)) throw new Error(`${where}: \`count\` must be a non-negative integer, but is ${count}`);
  if (perTriplet !== undefined && (!Number.isInteger(perTriplet) || perTriplet < 0)) throw new Error(`${where}: \`perTriplet\` must be a non-negative integer, but is ${perTriplet}`);
  if (!Number.isSafeInteger(options.seed)) throw new Error(`${where}: \`seed\` must be an integer, but is ${options.seed}`);
  const maxK = options.maxK ?? 100;
  if (!Number.isInteger(maxK) || maxK < 1) throw new Error(`${where}: \`maxK\` must be a positive integer, but is ${maxK}`);
  const inclusive = options.kInclusiveUpper ?? true;
  const p = options.prefixProbability ?? 0.5;
  if (!(p >= 0 && p <= 1)) throw new Error(`${where}: \`prefixProbability\` must be in [0, 1], but is ${p}`);
  const rand = mulberry32(options.seed);
  const out: SampledAugmentationExample[] = [];
  for (let i = 0; i < n; i++) {
    const index = count !== undefined ? i % triplets.length : Math.floor(i / perTriplet!);
    const t = triplets[index];
    // Two draws per example whatever the branch, so example i's draws do not depend on earlier coins.
    const coin = rand();
    const u = rand();
    const upper = Math.min(maxK, t.harmful.length) - (inclusive ? 0 : 1);
    let k = 0;
    if (coin < p && upper >= 1) k = 1 + Math.floor(u * upper);
    out.push({ ...augmentationExample(t.prompt, t.harmful, t.refusal, k), triplet: index });
  }
  return out;
}
