// Where given tokens stand in next-token distributions: rank (1 = the most likely token) and
// log-probability. Vega & Singh's point is that a refusal token can keep a high probability rank
// while its probability drops (or the reverse), so both are reported.

import { tf } from '../engine/tf.js';

export interface TokenRanks<R> {
  /** 1 + the number of vocabulary entries with a strictly greater logit (ties share the best rank). */
  ranks: R;
  /** log softmax(logits)[token]. */
  logProbs: R;
}

/**
 * Rank and log-probability of `tokenIds` in the distributions `logits`, position by position and
 * with no shift: tokenIds[b][t] is looked up in softmax(logits[b, t]). For a sequence's own
 * tokens pass logits[:, :-1] with ids[:, 1:]. logits [B, T, V] with ids [B, T], or [B, V] with
 * ids [B]; ids as a tensor or plain arrays. Results are plain arrays of the ids' shape.
 * Not differentiable (a metric).
 */
export function tokenRanks(logits: tf.Tensor3D, tokenIds: tf.Tensor2D | readonly (readonly number[])[]): TokenRanks<number[][]>;
export function tokenRanks(logits: tf.Tensor2D, tokenIds: tf.Tensor1D | readonly number[]): TokenRanks<number[]>;
export function tokenRanks(logits: tf.Tensor, tokenIds: tf.Tensor | readonly number[] | readonly (readonly number[])[]): TokenRanks<number[]> | TokenRanks<number[][]> {
  if (logits.rank !== 2 && logits.rank !== 3) throw new Error(`tokenRanks: \`logits\` must be [B, V] or [B, T, V], but has shape [${logits.shape}]`);
  const lead = logits.shape.slice(0, -1);
  const v = logits.shape[logits.rank - 1];
  const n = lead.reduce((a, d) => a * d, 1);
  // Token ids as a flat array, checked against the logits' leading shape.
  let ids: number[];
  let idShape: number[];
  if (tokenIds instanceof tf.Tensor) {
    idShape = tokenIds.shape;
    ids = Array.from(tokenIds.dataSync());
  } else if (logits.rank === 3) {
    const rows = tokenIds as readonly (readonly number[])[];
    if (!rows.every((r) => Array.isArray(r))) throw new Error('tokenRanks: with [B, T, V] logits, `tokenIds` must be [B, T] (an array of arrays)');
    idShape = [rows.length, rows.length > 0 ? rows[0].length : 0];
    if (rows.some((r) => r.length !== idShape[1])) throw new Error('tokenRanks: `tokenIds` rows have different lengths');
    ids = rows.flat();
  } else {
    const row = tokenIds as readonly number[];
    if (row.some((x) => Array.isArray(x))) throw new Error('tokenRanks: with [B, V] logits, `tokenIds` must be [B] (a flat array)');
    idShape = [row.length];
    ids = row.slice();
  }
  if (idShape.length !== lead.length || idShape.some((d, i) => d !== lead[i])) {
    throw new Error(`tokenRanks: \`tokenIds\` shape [${idShape}] must be the logits' shape without its last axis, [${lead}]`);
  }
  ids.forEach((id, i) => {
    if (!Number.isInteger(id) || id < 0 || id >= v) throw new Error(`tokenRanks: token id ${id} at flat position ${i} is not in [0, ${v - 1}]`);
  });
  const [rankData, logProbData] = tf.tidy(() => {
    const flat = tf.reshape(logits, [n, v]);
    const index = tf.tensor1d(ids.map((id, i) => i * v + id), 'int32');
    const picked = tf.reshape(tf.gather(tf.reshape(logits, [n * v]), index), [n, 1]);
    const above = tf.sum(tf.cast(tf.greater(flat, picked), 'int32'), 1);
    const logProb = tf.sub(tf.reshape(picked, [n]), tf.logSumExp(flat, 1));
    return [above.dataSync(), logProb.dataSync()];
  });
  const ranks = Array.from(rankData, (x) => x + 1);
  const logProbs = Array.from(logProbData);
  if (logits.rank === 2) return { ranks, logProbs };
  const t = lead[1];
  const split = (xs: number[]) => Array.from({ length: lead[0] }, (_, r) => xs.slice(r * t, (r + 1) * t));
  return { ranks: split(ranks), logProbs: split(logProbs) };
}
