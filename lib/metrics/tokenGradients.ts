// Per-token loss and gradient norm along fine-tuning responses (Qi et al. Figure 4): for each
// response position t, the cross-entropy of that single token under the model and the global L2
// norm (over every model parameter) of the gradient of that token's loss alone, averaged over the
// examples that reach position t. Qi et al. show both are largest at the first response tokens of
// harmful fine-tuning data for an aligned model: a fine-tuning attack's first steps mostly rewrite
// the first tokens, which is where a shallow alignment lives.
//
// Token t's loss only depends on the tokens before it, so its gradient is taken on the causal
// prefix alone with logits for the last position only (the same number as on the whole sequence,
// at a fraction of the cost). The model is never modified: gradients are computed, reduced to one
// norm and disposed.

import { crossEntropy } from '../engine/index.js';
import { tf } from '../engine/tf.js';
import { progress, type ProgressOptions } from '../report/index.js';
import { meanStd } from './stats.js';
import { trainingExample, type Target } from './target.js';

/** A training sequence: ids and which of them are targets (lossMask[t] = 1: token t is predicted from t - 1). */
export interface MaskedSequence {
  ids: readonly number[];
  lossMask: readonly number[];
}

/** A (request, response) pair, formatted by the target like its training examples (response + end-of-response token). */
export interface RequestResponse {
  request: string;
  response: string;
}

export interface TokenLossGradOptions {
  /** Only the first n response tokens of each example (default: all of them, the end-of-response token included). */
  maxTokens?: number;
  /** Also compute per-token gradient norms (default true; false: losses only, from batched forward passes). */
  gradNorm?: boolean;
  /** Rows per forward pass for the losses-only mode (default 32). */
  batchSize?: number;
  /** Progress bar options, or false for none. */
  progress?: ProgressOptions | false;
}

export interface TokenLossGradProfile {
  /** Mean over the examples that reach response position t of -log p(y_t | x, y_<t). */
  loss: number[];
  lossStd: number[];
  /** Mean over the same examples of ||grad_theta (-log p(y_t | x, y_<t))||_2, over all parameters (empty when gradNorm is false). */
  gradNorm: number[];
  gradNormStd: number[];
  /** Examples reaching position t. */
  count: number[];
  /** Per example, per response position. */
  perExample: { loss: number[][]; gradNorm: number[][] };
}

function isSequence(x: unknown): x is MaskedSequence {
  return typeof x === 'object' && x !== null && Array.isArray((x as MaskedSequence).ids) && Array.isArray((x as MaskedSequence).lossMask);
}

/** Positions (indices into ids, >= 1) of an example's targets, in order. */
function targetPositions(e: MaskedSequence, where: string, i: number): number[] {
  if (e.ids.length !== e.lossMask.length) throw new Error(`${where}: example ${i} has ${e.ids.length} ids but ${e.lossMask.length} loss-mask entries`);
  const out: number[] = [];
  for (let t = 1; t < e.ids.length; t++) if (e.lossMask[t]) out.push(t);
  if (out.length === 0) throw new Error(`${where}: example ${i} has no target tokens (its lossMask is 0 after position 0)`);
  return out;
}

function summarize(rows: number[][]): { mean: number[]; std: number[]; count: number[] } {
  const longest = Math.max(0, ...rows.map((r) => r.length));
  const mean: number[] = [];
  const std: number[] = [];
  const count: number[] = [];
  for (let t = 0; t < longest; t++) {
    const s = meanStd(rows.filter((r) => r.length > t).map((r) => r[t]));
    mean.push(s.mean);
    std.push(s.std);
    count.push(s.n);
  }
  return { mean, std, count };
}

/**
 * Per-token cross-entropy and per-token gradient norm of `target`'s model along the responses of
 * `data`: (request, response) pairs (formatted by the target, end-of-response token appended) or
 * training sequences with loss masks (e.g. from examplesFor). Response position t is the t-th
 * target token of each example. Gradient norms cost one backward pass per token (on the prefix).
 */
export async function perTokenLossAndGradNorm(
  target: Target, data: readonly (RequestResponse | MaskedSequence)[], options: TokenLossGradOptions = {},
): Promise<TokenLossGradProfile> {
  const where = 'perTokenLossAndGradNorm';
  if (!Array.isArray(data) || data.length === 0) throw new Error(`${where}: no examples (pass (request, response) pairs or {ids, lossMask} sequences)`);
  const maxTokens = options.maxTokens;
  if (maxTokens !== undefined && (!Number.isInteger(maxTokens) || maxTokens < 1)) throw new Error(`${where}: \`maxTokens\` must be a positive integer, but is ${maxTokens}`);
  const batchSize = options.batchSize ?? 32;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`${where}: \`batchSize\` must be a positive integer, but is ${batchSize}`);
  const withGrad = options.gradNorm ?? true;
  const sequences: MaskedSequence[] = data.map((d, i) => {
    if (isSequence(d)) return d;
    if (typeof d?.request !== 'string' || typeof d?.response !== 'string') throw new Error(`${where}: example ${i} is neither {request, response} strings nor {ids, lossMask}`);
    return trainingExample(target, d.request, d.response);
  });
  const positions = sequences.map((e, i) => targetPositions(e, where, i).slice(0, maxTokens));
  const vocab = target.model.config.vocabSize;
  sequences.forEach((e, i) => e.ids.forEach((id, t) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocab) throw new Error(`${where}: example ${i} token ${t} is ${id}; ids must be integers in [0, ${vocab})`);
  }));
  const model = target.model;
  const losses: number[][] = [];
  const norms: number[][] = [];
  const total = positions.reduce((a, p) => a + p.length, 0);
  const bar = options.progress === false ? null : progress(withGrad ? total : sequences.length, { label: where, unit: withGrad ? 'tokens' : 'examples', ...(options.progress ?? {}) });
  if (withGrad) {
    const vars = [...model.variables().values()];
    for (let i = 0; i < sequences.length; i++) {
      const rowLoss: number[] = [];
      const rowNorm: number[] = [];
      for (const p of positions[i]) {
        const ids = tf.tensor2d([sequences[i].ids.slice(0, p) as number[]], [1, p], 'int32');
        const label = tf.tensor1d([sequences[i].ids[p]], 'int32');
        const out = tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => {
            const { logits } = model.forward(ids, { logitsToKeep: 1 }); // [1, 1, V]: predicts token p
            return tf.sum(crossEntropy(tf.reshape(logits, [1, vocab]), label)) as tf.Scalar;
          }, vars);
          const squares = Object.values(grads).filter((g) => g).map((g) => tf.sum(tf.square(g)));
          return tf.stack([value, tf.sqrt(tf.addN(squares))]);
        });
        const [loss, norm] = await out.data();
        tf.dispose([out, ids, label]);
        rowLoss.push(loss);
        rowNorm.push(norm);
        bar?.tick(1);
      }
      losses.push(rowLoss);
      norms.push(rowNorm);
    }
  } else {
    for (let start = 0; start < sequences.length; start += batchSize) {
      const chunk = sequences.slice(start, start + batchSize);
      const width = Math.max(...chunk.map((e) => e.ids.length));
      const ids = chunk.map((e) => [...e.ids, ...new Array(width - e.ids.length).fill(target.padTokenId)]);
      const mask = chunk.map((e) => [...e.ids.map(() => 1), ...new Array(width - e.ids.length).fill(0)]);
      const nll = tf.tidy(() => {
        const idsT = tf.tensor2d(ids, undefined, 'int32');
        const { logits } = model.forward(idsT, { attentionMask: tf.tensor2d(mask, undefined, 'int32') });
        const [b, t] = idsT.shape;
        return crossEntropy(tf.slice(logits, [0, 0, 0], [b, t - 1, vocab]), tf.slice(idsT, [0, 1], [b, t - 1])); // [B, T-1]: column s is token s + 1
      });
      const values = (await nll.array()) as number[][];
      nll.dispose();
      chunk.forEach((_, r) => losses.push(positions[start + r].map((p) => values[r][p - 1])));
      bar?.tick(chunk.length);
    }
  }
  bar?.done();
  const l = summarize(losses);
  const g = withGrad ? summarize(norms) : { mean: [], std: [] };
  return { loss: l.mean, lossStd: l.std, gradNorm: g.mean, gradNormStd: g.std, count: l.count, perExample: { loss: losses, gradNorm: norms } };
}
