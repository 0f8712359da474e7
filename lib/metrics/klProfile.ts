// Per-token KL(P || Q) along teacher-forced responses (Qi et al. Figure 1): both models read the
// same response tokens, each after its own prompt format; at response position t the KL between
// their next-token distributions is taken. Position 0 is the distribution of the first response
// token (predicted from the prompt's last position).

import { tf } from '../engine/tf.js';
import { progress } from '../report/index.js';
import { checkBehaviours, harmfulResponseOf, type HarmfulBehaviour } from './behaviours.js';
import { perTokenKL } from './kl.js';
import { meanStd } from './stats.js';
import type { Target } from './target.js';

export interface KLProfile {
  /** kl[i][t]: behaviour i, response position t (length = that behaviour's response tokens). */
  perBehaviour: number[][];
  /** Per position over behaviours that reach it: mean, sample std, count. */
  mean: number[];
  std: number[];
  count: number[];
}

/** Logits of `target` at the positions that predict each response token: rows [R_i, V] per behaviour. */
function responseLogits(target: Target, prompts: number[][], responses: number[][]): tf.Tensor3D {
  const seqs = prompts.map((p, i) => [...p, ...responses[i]]);
  const width = Math.max(...seqs.map((s) => s.length));
  const ids = seqs.map((s) => [...s, ...new Array(width - s.length).fill(target.padTokenId)]);
  const mask = seqs.map((s) => [...s.map(() => 1), ...new Array(width - s.length).fill(0)]);
  const rMax = Math.max(...responses.map((r) => r.length));
  // Row i, response position t is read from sequence position prompt_i - 1 + t (clamped on pads, masked later).
  const gather = prompts.map((p, i) => Array.from({ length: rMax }, (_, t) => i * width + Math.min(p.length - 1 + t, width - 1)));
  return tf.tidy(() => {
    const idsT = tf.tensor2d(ids, undefined, 'int32');
    const maskT = tf.tensor2d(mask, undefined, 'int32');
    const { logits } = target.model.forward(idsT, { attentionMask: maskT });
    const V = logits.shape[2];
    return tf.gather(logits.reshape([-1, V]), tf.tensor1d(gather.flat(), 'int32')).reshape([prompts.length, rMax, V]) as tf.Tensor3D;
  });
}

/**
 * KL(P || Q) per response token along each behaviour's harmful answer, teacher-forced. P and Q must
 * share a tokenizer (the response ids come from P's). Qi et al.: P = aligned, Q = base.
 */
export async function klAlongResponses(p: Target, q: Target, behaviours: readonly HarmfulBehaviour[], options: { batchSize?: number; maxTokens?: number } = {}): Promise<KLProfile> {
  checkBehaviours(behaviours, 'klAlongResponses');
  if (p.model.config.vocabSize !== q.model.config.vocabSize) {
    throw new Error(`klAlongResponses: the two targets have different vocabularies (${p.model.config.vocabSize} vs ${q.model.config.vocabSize} tokens)`);
  }
  const batchSize = options.batchSize ?? 32;
  const responses = behaviours.map((b) => {
    const ids = p.responseIds(harmfulResponseOf(b, 'klAlongResponses'));
    return options.maxTokens ? ids.slice(0, options.maxTokens) : ids;
  });
  const perBehaviour: number[][] = [];
  const bar = progress(behaviours.length, { label: `KL(${p.name} || ${q.name})`, unit: 'responses' });
  for (let start = 0; start < behaviours.length; start += batchSize) {
    const rows = behaviours.slice(start, start + batchSize);
    const resp = responses.slice(start, start + batchSize);
    const kl = tf.tidy(() => {
      const lp = responseLogits(p, rows.map((b) => p.promptIds(b.request)), resp);
      const lq = responseLogits(q, rows.map((b) => q.promptIds(b.request)), resp);
      const rMax = lp.shape[1];
      const mask = tf.tensor2d(resp.map((r) => Array.from({ length: rMax }, (_, t) => (t < r.length ? 1 : 0))), undefined, 'int32');
      return perTokenKL(lp, lq, mask);
    });
    const values = (await kl.array()) as number[][];
    kl.dispose();
    values.forEach((row, i) => perBehaviour.push(row.slice(0, resp[i].length)));
    bar.tick(rows.length);
  }
  bar.done();
  return klProfileOf(perBehaviour);
}

/** The profile of per-behaviour KL rows: per position, mean, sample std and count over the behaviours that reach it
 *  (so rows computed in chunks, e.g. the CLI's resumable units, aggregate exactly as one call would). */
export function klProfileOf(perBehaviour: number[][]): KLProfile {
  const longest = Math.max(...perBehaviour.map((r) => r.length));
  const mean: number[] = [];
  const std: number[] = [];
  const count: number[] = [];
  for (let t = 0; t < longest; t++) {
    const xs = perBehaviour.filter((r) => r.length > t).map((r) => r[t]);
    const s = meanStd(xs);
    mean.push(s.mean);
    std.push(s.std);
    count.push(xs.length);
  }
  return { perBehaviour, mean, std, count };
}

/** Mean KL over the first `front` positions vs the mean over later positions, pooled over all behaviours' tokens. */
export function klFrontLoading(profile: KLProfile, front = 5): { front: number; later: number; ratio: number } {
  const f = profile.perBehaviour.flatMap((r) => r.slice(0, front));
  const l = profile.perBehaviour.flatMap((r) => r.slice(front));
  const avg = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);
  const front_ = avg(f);
  const later = avg(l);
  return { front: front_, later, ratio: front_ / later };
}
