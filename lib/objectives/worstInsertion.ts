// Random worst-insertion training (Lyu et al., "When Autoregressive Consistency Hurts Safety
// Alignment"): adversarial safety alignment against harmful spans inserted anywhere in a refusal.
// No code or settings are published; this formulation and every default below are ours.
//
// A safety triplet (x, h, r) = (request, harmful answer, refusal), as token ids; the refusal is
// stored with its end-of-response token (r + eos, as augmentation triplets are), |r| counts r
// without it. One worst-insertion example, built at a training step from the model being trained:
//
//   1. M candidates (j_c, n_c), c = 1..M, drawn from a seeded generator:
//        j ~ U{0, .., |r|}                     (refusal tokens kept before the insertion; j = 0 is
//                                               Qi et al.'s prefix position, j = |r| after the whole
//                                               refusal)
//        n ~ U{1, .., min(nMax, |h| - 1)}      (harmful tokens inserted; at least one token of h is
//                                               left to continue with)
//      two draws per candidate, j first (so candidate c's draws do not depend on the others).
//   2. Score each candidate by how likely the current model continues the harmful answer after it,
//      without gradient:
//        score(j, n) = (1 / m') * sum_{t = 0}^{m' - 1} log p_theta(h[n + t] | x, r[:j], h[:n + t]),
//        m' = min(m, |h| - n)
//      the mean log-probability per token of the next m tokens of h (a mean, so that candidates
//      near the end of h, with fewer than m tokens left, are not favoured for having fewer terms).
//   3. Keep the argmax (j*, n*) (the first candidate on ties) and train on
//        x + r[:j*] + h[:n*] + r + eos     with the loss on r + eos only
//      (the whole refusal again after the insertion: the model learns to return to refusing, as Qi
//      et al.'s recovery examples x + h[:k] + r, which are the case j = 0).
//
// The loss is the token-level mean cross-entropy over the batch (crossEntropyObjective, under a name
// that records the settings), mixed with a utility anchor by batch composition as augmentation is
// (lib/train/worstInsertion.ts: worstInsertionModel). A share `plainProbability` of the safety
// examples (default 0.5, Qi et al.'s fair coin) are plain refusals x + r + eos instead, so the
// refusal at the first response token stays trained.
//
// Defaults (ours): M = 4 candidates, nMax = 16 harmful tokens, m = 8 continuation tokens.

import { tf } from '../engine/tf.js';
import { crossEntropyObjective, targetLogProbs } from './crossEntropy.js';
import type { AugmentationTriplet } from './augmentation.js';
import type { CausalLM, Objective } from './types.js';

export interface WorstInsertionOptions {
  /** M: candidate insertions sampled per safety example (default 4). */
  candidates?: number;
  /** nMax: the most harmful tokens one insertion holds (default 16). */
  maxSpan?: number;
  /** m: harmful-continuation tokens each candidate is scored on (default 8). */
  continuation?: number;
  /** Share of safety examples that are plain refusals x + r + eos instead (default 0.5). */
  plainProbability?: number;
}

export type ResolvedWorstInsertionOptions = Required<WorstInsertionOptions>;

export const WORST_INSERTION_DEFAULTS: Readonly<ResolvedWorstInsertionOptions> = Object.freeze({ candidates: 4, maxSpan: 16, continuation: 8, plainProbability: 0.5 });

const KNOWN = ['candidates', 'maxSpan', 'continuation', 'plainProbability'];

/** Defaults filled in and checked; errors name the option. */
export function resolveWorstInsertionOptions(options: WorstInsertionOptions = {}): ResolvedWorstInsertionOptions {
  if (typeof options !== 'object' || options === null) throw new Error(`worstInsertion: options must be an object, but are ${String(options)}`);
  for (const key of Object.keys(options)) if (!KNOWN.includes(key)) throw new Error(`worstInsertion: unknown option \`${key}\` (known: ${KNOWN.join(', ')})`);
  const o = { ...WORST_INSERTION_DEFAULTS, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as ResolvedWorstInsertionOptions;
  for (const key of ['candidates', 'maxSpan', 'continuation'] as const) {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new Error(`worstInsertion: \`${key}\` must be an integer >= 1, but is ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`);
  }
  const p = o.plainProbability;
  if (typeof p !== 'number' || !(p >= 0 && p < 1)) throw new Error(`worstInsertion: \`plainProbability\` must be a number in [0, 1), but is ${String(p)}`);
  return o;
}

/** One insertion: j refusal tokens, then n harmful tokens. */
export interface InsertionCandidate {
  j: number;
  n: number;
}

function checkTriplet(t: AugmentationTriplet, where: string): void {
  if (!t || !Array.isArray(t.prompt) || t.prompt.length === 0) throw new Error(`${where}: the triplet needs a non-empty \`prompt\``);
  if (!Array.isArray(t.harmful) || t.harmful.length < 2) {
    throw new Error(`${where}: the harmful answer must have at least 2 tokens (one to insert, one to continue with), but has ${Array.isArray(t.harmful) ? t.harmful.length : 'none'}`);
  }
  if (!Array.isArray(t.refusal) || t.refusal.length < 1) throw new Error(`${where}: the refusal must end with its end-of-response token (r + eos)`);
}

/** The refusal without its end-of-response token. */
const refusalTokens = (t: AugmentationTriplet) => t.refusal.slice(0, -1);

/** M candidates (j, n) for a triplet from `next` (a uniform [0, 1) source), two draws each (see the header). */
export function sampleInsertionCandidates(triplet: AugmentationTriplet, options: Pick<ResolvedWorstInsertionOptions, 'candidates' | 'maxSpan'>, next: () => number): InsertionCandidate[] {
  checkTriplet(triplet, 'sampleInsertionCandidates');
  const r = triplet.refusal.length - 1;
  const nUpper = Math.min(options.maxSpan, triplet.harmful.length - 1);
  return Array.from({ length: options.candidates }, () => {
    const j = Math.floor(next() * (r + 1));
    const n = 1 + Math.floor(next() * nUpper);
    return { j, n };
  });
}

function checkCandidate(triplet: AugmentationTriplet, c: InsertionCandidate, where: string): void {
  const r = triplet.refusal.length - 1;
  if (!Number.isInteger(c.j) || c.j < 0 || c.j > r) throw new Error(`${where}: j must be an integer in [0, ${r}] (the refusal's length without eos), but is ${c.j}`);
  if (!Number.isInteger(c.n) || c.n < 1 || c.n >= triplet.harmful.length) throw new Error(`${where}: n must be an integer in [1, ${triplet.harmful.length - 1}], but is ${c.n}`);
}

/** The training example of an insertion: x + r[:j] + h[:n] + r + eos, targets r + eos. */
export function insertionExample(triplet: AugmentationTriplet, c: InsertionCandidate): { ids: number[]; lossMask: number[] } {
  checkTriplet(triplet, 'insertionExample');
  checkCandidate(triplet, c, 'insertionExample');
  const context = [...triplet.prompt, ...refusalTokens(triplet).slice(0, c.j), ...triplet.harmful.slice(0, c.n)];
  const ids = [...context, ...triplet.refusal];
  return { ids, lossMask: ids.map((_, t) => (t >= context.length ? 1 : 0)) };
}

/** The scoring sequence of an insertion: x + r[:j] + h[:n + m'], whose last m' tokens (from `start`) are scored. */
export function insertionScoreSequence(triplet: AugmentationTriplet, c: InsertionCandidate, continuation: number): { ids: number[]; start: number; length: number } {
  checkTriplet(triplet, 'insertionScoreSequence');
  checkCandidate(triplet, c, 'insertionScoreSequence');
  const length = Math.min(continuation, triplet.harmful.length - c.n);
  const start = triplet.prompt.length + c.j + c.n;
  const ids = [...triplet.prompt, ...refusalTokens(triplet).slice(0, c.j), ...triplet.harmful.slice(0, c.n + length)];
  return { ids, start, length };
}

/**
 * Mean log-probability of ids[start .. start + length) given the tokens before them, per sequence,
 * under `model` with no gradient (right-padded batches of `batchSize`; padding follows the scored
 * tokens, so a causal model never sees it).
 */
export function continuationLogLikelihoods(
  model: CausalLM, sequences: readonly { ids: readonly number[]; start: number; length: number }[], padId: number, batchSize = 32,
): number[] {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`continuationLogLikelihoods: \`batchSize\` must be a positive integer, but is ${batchSize}`);
  sequences.forEach((s, i) => {
    if (!Number.isInteger(s.start) || !Number.isInteger(s.length) || s.start < 1 || s.length < 1 || s.start + s.length > s.ids.length) {
      throw new Error(`continuationLogLikelihoods: sequence ${i} scores [${s.start}, ${s.start + s.length}) of its ${s.ids.length} tokens (it needs 1 <= start and start + length <= its length, length >= 1)`);
    }
  });
  const out: number[] = [];
  for (let first = 0; first < sequences.length; first += batchSize) {
    const chunk = sequences.slice(first, first + batchSize);
    const width = Math.max(...chunk.map((s) => s.ids.length));
    const ids = new Int32Array(chunk.length * width).fill(padId);
    const mask = new Int32Array(chunk.length * width);
    chunk.forEach((s, r) => s.ids.forEach((id, t) => {
      ids[r * width + t] = id;
      mask[r * width + t] = 1;
    }));
    const lp = tf.tidy(() => {
      const inputIds = tf.tensor2d(ids, [chunk.length, width], 'int32');
      const { logits } = model.forward(inputIds, { attentionMask: tf.tensor2d(mask, [chunk.length, width], 'int32') });
      return targetLogProbs(logits, inputIds).dataSync(); // [n, width - 1]: entry t - 1 = log p(token t | tokens < t)
    });
    chunk.forEach((s, r) => {
      let sum = 0;
      for (let t = s.start; t < s.start + s.length; t++) sum += lp[r * (width - 1) + t - 1];
      out.push(sum / s.length);
    });
  }
  return out;
}

export interface WorstInsertionChoice extends InsertionCandidate {
  /** score(j, n) of the chosen candidate. */
  score: number;
  /** Every candidate with its score, in the order given. */
  candidates: (InsertionCandidate & { score: number })[];
}

/**
 * For each triplet, the candidate whose harmful continuation the model finds most likely (the
 * argmax of score(j, n), the first on ties); all candidates of all triplets are scored together.
 */
export function chooseWorstInsertions(
  model: CausalLM, triplets: readonly AugmentationTriplet[], candidates: readonly (readonly InsertionCandidate[])[], continuation: number, padId: number, batchSize = 32,
): WorstInsertionChoice[] {
  if (triplets.length !== candidates.length) throw new Error(`chooseWorstInsertions: ${candidates.length} candidate lists for ${triplets.length} triplets`);
  if (!Number.isInteger(continuation) || continuation < 1) throw new Error(`chooseWorstInsertions: \`continuation\` must be an integer >= 1, but is ${continuation}`);
  const sequences = triplets.flatMap((t, i) => {
    if (candidates[i].length === 0) throw new Error(`chooseWorstInsertions: triplet ${i} has no candidates`);
    return candidates[i].map((c) => insertionScoreSequence(t, c, continuation));
  });
  const scores = continuationLogLikelihoods(model, sequences, padId, batchSize);
  let at = 0;
  return candidates.map((list) => {
    const scored = list.map((c) => ({ j: c.j, n: c.n, score: scores[at++] }));
    let best = 0;
    for (let c = 1; c < scored.length; c++) if (scored[c].score > scored[best].score) best = c;
    return { ...scored[best], candidates: scored };
  });
}

/** Token-mean cross-entropy on the worst-insertion examples and the anchor, named after its settings (checkpoints of other settings are another run). */
export function worstInsertionObjective(options: WorstInsertionOptions = {}): Objective {
  const o = resolveWorstInsertionOptions(options);
  return {
    ...crossEntropyObjective(),
    name: `cross_entropy+worst_insertion(candidates=${o.candidates},maxSpan=${o.maxSpan},continuation=${o.continuation},plain=${o.plainProbability})`,
  };
}
