// Decoding settings shared by every evaluation: the papers' safety decoding, plain sampling, greedy.

export interface Decoding {
  /** false: greedy. */
  doSample: boolean;
  temperature?: number;
  topP?: number;
  topK?: number;
  /** Sampling seed. Batch b of an evaluation samples with a seed derived from (seed, b): reproducible for a given batch size. */
  seed?: number;
  /** Default: the target's `maxNewTokens` (long enough for a full answer). */
  maxNewTokens?: number;
}

/** Qi et al.'s safety decoding: temperature 0.9, top-p 0.6, top-k 50. */
export const QI_DECODING: Decoding = { doSample: true, temperature: 0.9, topP: 0.6, topK: 50, seed: 0 };
/** Plain sampling from the model's distribution: temperature 1, top-p 1. */
export const FULL_SAMPLING: Decoding = { doSample: true, temperature: 1, topP: 1, seed: 0 };
export const GREEDY: Decoding = { doSample: false };
