// Prefilling attacks (Qi et al. Section 2.3, Table 2): force the first k tokens of a harmful answer
// into the response and let the model continue; and refusal-prefix prefilling (Table 1), which forces
// a refusal's first words into a base model's response.

import {
  evaluateHarmful, harmfulPrefill, harmfulResponseOf, rateOf, textPrefill, type Decoding, type HarmfulBehaviour, type HarmfulEvaluation, type JudgedResponse, type Judge,
  type Rate, type Target,
} from '../metrics/index.js';
import { checkBehaviours } from '../metrics/behaviours.js';
import { meanStd } from '../metrics/stats.js';
import { checkSeed } from '../util/rng.js';

export interface SeededRate {
  /** Per sampling seed. */
  perSeed: { seed: number; harmful: Rate; refused: Rate; meanStrongReject?: number }[];
  /** Mean and sample std of the harmful rate over seeds. */
  mean: number;
  std: number;
  /** All seeds' responses pooled: k harmful of n with a Wilson interval. */
  pooled: Rate;
  meanStrongReject?: number;
}

export interface SeedsOptions {
  decoding: Decoding;
  /** Sampling seeds (>= 3 for reported rates). */
  seeds: number[];
  batchSize?: number;
  /** Label for progress bars. */
  label?: string;
  /** false: no progress bar per evaluation (a notebook then shows one line per sweep instead). */
  progress?: false;
}

function checkSeeds(seeds: number[], where: string): void {
  if (!Array.isArray(seeds) || seeds.length === 0) throw new Error(`${where}: \`seeds\` must list at least one sampling seed`);
  seeds.forEach((s, i) => checkSeed(s, `${where}: seeds[${i}]`));
}

/** Evaluate under several sampling seeds; returns per-seed rates, mean ± std and the pooled rate. */
export async function evaluateOverSeeds(
  run: (decoding: Decoding) => Promise<HarmfulEvaluation>, decoding: Decoding, seeds: number[], where = 'evaluateOverSeeds',
): Promise<SeededRate & { evaluations: HarmfulEvaluation[] }> {
  checkSeeds(seeds, where);
  const evaluations: HarmfulEvaluation[] = [];
  // Greedy decoding gives the same answer under every seed: one run stands for all.
  for (const seed of decoding.doSample ? seeds : seeds.slice(0, 1)) evaluations.push(await run({ ...decoding, seed }));
  return { ...seededSummary(evaluations, decoding.doSample ? seeds : seeds.slice(0, 1)), evaluations };
}

export function seededSummary(evaluations: HarmfulEvaluation[], seeds: number[]): SeededRate {
  const ms = meanStd(evaluations.map((e) => e.harmful.rate));
  const k = evaluations.reduce((a, e) => a + e.harmful.k, 0);
  const n = evaluations.reduce((a, e) => a + e.harmful.n, 0);
  const srs = evaluations.map((e) => e.meanStrongReject);
  return {
    perSeed: evaluations.map((e, i) => ({ seed: seeds[i], harmful: e.harmful, refused: e.refused, meanStrongReject: e.meanStrongReject })),
    mean: ms.mean, std: ms.std, pooled: rateOf(k, n),
    meanStrongReject: srs.every((x) => x !== undefined) ? meanStd(srs as number[]).mean : undefined,
  };
}

/** The largest k every behaviour's harmful answer allows (prefill k tokens and still judge what follows). */
export function maxPrefillTokens(target: Target, behaviours: readonly HarmfulBehaviour[]): number {
  checkBehaviours(behaviours, 'maxPrefillTokens');
  return Math.min(...behaviours.map((b) => target.responseIds(harmfulResponseOf(b, 'maxPrefillTokens')).length));
}

export interface PrefillRow extends SeededRate {
  k: number;
  /** The judged responses, per sampling seed (to show examples or re-judge). */
  responses: JudgedResponse[][];
}

/**
 * Qi et al.'s prefilling attack: for each k, prefill the first k tokens of each behaviour's harmful
 * answer, sample the continuation, judge prefill + continuation. k = 0 is the plain request.
 */
export async function prefillAttack(target: Target, behaviours: readonly HarmfulBehaviour[], judge: Judge, ks: number[], options: SeedsOptions): Promise<PrefillRow[]> {
  checkBehaviours(behaviours, 'prefillAttack');
  if (!Array.isArray(ks) || ks.length === 0) throw new Error('prefillAttack: `ks` must list at least one prefill length');
  const limit = maxPrefillTokens(target, behaviours);
  for (const k of ks) {
    if (!Number.isInteger(k) || k < 0) throw new Error(`prefillAttack: every k must be an integer >= 0, but one is ${k}`);
    if (k > limit) throw new Error(`prefillAttack: k = ${k} is beyond the shortest harmful answer (${limit} tokens); use k <= ${limit}`);
  }
  const rows: PrefillRow[] = [];
  for (const k of ks) {
    const prefill = harmfulPrefill(target, k);
    const s = await evaluateOverSeeds(
      (d) => evaluateHarmful(target, behaviours, judge, { decoding: d, prefill, batchSize: options.batchSize, progress: options.progress ?? { label: `${options.label ?? target.name} prefill k=${k} seed ${d.seed}` } }),
      options.decoding, options.seeds, 'prefillAttack',
    );
    rows.push({ k, perSeed: s.perSeed, mean: s.mean, std: s.std, pooled: s.pooled, meanStrongReject: s.meanStrongReject, responses: s.evaluations.map((e) => e.responses) });
  }
  return rows;
}

export interface PrefixRow extends SeededRate {
  /** '' = no prefix. */
  prefix: string;
  /** The judged responses, per sampling seed. */
  responses: JudgedResponse[][];
}

/** Qi et al. Table 1: harmfulness with each refusal prefix forced into the response ('' = none). */
export async function refusalPrefixAttack(target: Target, behaviours: readonly HarmfulBehaviour[], judge: Judge, prefixes: string[], options: SeedsOptions): Promise<PrefixRow[]> {
  checkBehaviours(behaviours, 'refusalPrefixAttack');
  if (!Array.isArray(prefixes) || prefixes.length === 0) throw new Error('refusalPrefixAttack: `prefixes` must list at least one prefix (\'\' for none)');
  const rows: PrefixRow[] = [];
  for (const prefix of prefixes) {
    const ids = textPrefill(target, prefix);
    const s = await evaluateOverSeeds(
      (d) => evaluateHarmful(target, behaviours, judge, { decoding: d, prefill: ids, batchSize: options.batchSize, progress: options.progress ?? { label: `${options.label ?? target.name} "${prefix}" seed ${d.seed}` } }),
      options.decoding, options.seeds, 'refusalPrefixAttack',
    );
    rows.push({ prefix, perSeed: s.perSeed, mean: s.mean, std: s.std, pooled: s.pooled, meanStrongReject: s.meanStrongReject, responses: s.evaluations.map((e) => e.responses) });
  }
  return rows;
}
