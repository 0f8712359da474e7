// Qi et al.'s token-wise constrained fine-tuning objective (Section 4, Eq. 3): fine-tune on target
// tokens y_t while keeping the first few tokens' log-probabilities close to the initial
// (reference) model's, by a per-position sharpness beta_t:
//
//   loss_t = (2 / beta_t) * -log sigmoid(beta_t * (log p(y_t | x, y_<t) - log p_ref(y_t | x, y_<t)))
//
// with beta = 0.5 for the first response token, 2 for tokens 2-5 and 0.1 after (large beta: the
// loss saturates as soon as the model moves above the reference, so those tokens barely move;
// beta -> 0 recovers plain cross-entropy up to a constant). Its gradient w.r.t. log p is
// -2 sigmoid(beta_t (log p_ref - log p)): cross-entropy's gradient scaled by a weight in (0, 2).
//
// The authors' code (Unispac/shallow-vs-deep-alignment, ConstrainedSFTTrainer.soft_sft_loss)
// implements exactly that gradient as a weighted cross-entropy, the 'reference' form here:
//
//   loss_t = -detach(max(2 sigmoid(beta_t (log p_ref - log p)), 1e-3)) * log p
//
// Both forms have the same gradient except where the clamp is active (weight < 1e-3, i.e. the
// model is far more confident than the reference), where the reference form keeps a 1e-3 weight;
// their loss values differ (only the eq3 value is the paper's objective). Both average over all
// target tokens of the batch (token-level mean), as the authors' torch.cat(losses).mean() does.
//
// Reference log-probs come from the initial model, computed once before training
// (`referenceLogProbs` / `withRefLogProbs`) and handed to the objective per batch as
// `batch.extras.refLogprobs` (`collateRefLogProbs` as the trainer's `batchExtras`).

import { tf } from '../engine/tf.js';
import { targetLogProbs } from './crossEntropy.js';
import type { Batch, CausalLM, Objective } from './types.js';

export type ConstrainedSFTForm = 'eq3' | 'reference';

export interface ConstrainedSFTOptions {
  /** beta of each row's 1st target token. Default 0.5. */
  betaFirst?: number;
  /** beta of target tokens 2..earlyUntil. Default 2. */
  betaEarly?: number;
  /** Last target token (1-based, per row) that gets betaEarly. Default 5. */
  earlyUntil?: number;
  /** beta of target tokens after earlyUntil. Default 0.1. */
  betaLate?: number;
  /** Shorthand for one beta at every position (betaFirst = betaEarly = betaLate); not combinable with those. */
  beta?: number;
  /** 'eq3' (the paper's loss, default) or 'reference' (the authors' weighted cross-entropy with its 1e-3 clamp). */
  form?: ConstrainedSFTForm;
}

export interface ResolvedConstrainedSFTOptions {
  betaFirst: number;
  betaEarly: number;
  earlyUntil: number;
  betaLate: number;
  form: ConstrainedSFTForm;
}

/** Qi et al.'s settings (the authors' beta 0.1 with first_token_bias_factor 5, bias_factor 20, bias_length 5). */
export const CONSTRAINED_SFT_DEFAULTS: Readonly<ResolvedConstrainedSFTOptions> = Object.freeze({
  betaFirst: 0.5, betaEarly: 2, earlyUntil: 5, betaLate: 0.1, form: 'eq3',
});

/** The 'reference' form's lower clamp on the detached weight (the authors' torch.clamp(..., min=1e-3)). */
export const REFERENCE_WEIGHT_MIN = 1e-3;

const OPTION_KEYS = ['betaFirst', 'betaEarly', 'earlyUntil', 'betaLate', 'beta', 'form'];

/** Fill in defaults and validate; errors name the offending option. */
export function resolveConstrainedSFTOptions(options: ConstrainedSFTOptions = {}): ResolvedConstrainedSFTOptions {
  if (typeof options !== 'object' || options === null) throw new Error(`constrained SFT: options must be an object, but are ${String(options)}`);
  for (const key of Object.keys(options)) {
    if (!OPTION_KEYS.includes(key)) throw new Error(`constrained SFT: unknown option \`${key}\` (known: ${OPTION_KEYS.join(', ')})`);
  }
  const checkBeta = (name: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
      throw new Error(`constrained SFT: \`${name}\` must be a finite number > 0, but is ${String(value)}`);
    }
    return value;
  };
  let { betaFirst, betaEarly, betaLate } = options;
  if (options.beta !== undefined) {
    const given = (['betaFirst', 'betaEarly', 'betaLate'] as const).filter((k) => options[k] !== undefined);
    if (given.length > 0) throw new Error(`constrained SFT: \`beta\` sets every position's beta and cannot be combined with \`${given.join('`, `')}\``);
    const beta = checkBeta('beta', options.beta);
    betaFirst = betaEarly = betaLate = beta;
  }
  const earlyUntil = options.earlyUntil ?? CONSTRAINED_SFT_DEFAULTS.earlyUntil;
  if (typeof earlyUntil !== 'number' || !Number.isInteger(earlyUntil) || earlyUntil < 1) {
    throw new Error(`constrained SFT: \`earlyUntil\` must be an integer >= 1, but is ${String(earlyUntil)}`);
  }
  const form = options.form ?? CONSTRAINED_SFT_DEFAULTS.form;
  if (form !== 'eq3' && form !== 'reference') throw new Error(`constrained SFT: \`form\` must be 'eq3' or 'reference', but is ${JSON.stringify(form)}`);
  return {
    betaFirst: checkBeta('betaFirst', betaFirst ?? CONSTRAINED_SFT_DEFAULTS.betaFirst),
    betaEarly: checkBeta('betaEarly', betaEarly ?? CONSTRAINED_SFT_DEFAULTS.betaEarly),
    earlyUntil,
    betaLate: checkBeta('betaLate', betaLate ?? CONSTRAINED_SFT_DEFAULTS.betaLate),
    form,
  };
}

/**
 * Identity in the forward pass, zero gradient in the backward pass (torch's .detach() inside a
 * tape; tfjs has no stopGradient). Built on tf.customGrad, whose forward computation is not
 * recorded on the tape, so nothing upstream of `x` receives a gradient through the result.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  const f = tf.customGrad((a: tf.Tensor | tf.GradSaveFunc) => ({
    value: tf.clone(a as tf.Tensor),
    gradFunc: (dy: tf.Tensor | tf.Tensor[]) => tf.zerosLike(dy as tf.Tensor),
  }));
  return f(x) as T;
}

function checkShapes(where: string, logits: tf.Tensor3D, inputIds: tf.Tensor2D, named: Record<string, tf.Tensor>): void {
  const [b, t] = inputIds.shape;
  if (inputIds.rank !== 2) throw new Error(`${where}: \`inputIds\` must be [B, T], but has shape [${inputIds.shape}]`);
  if (logits.rank !== 3 || logits.shape[0] !== b || logits.shape[1] !== t) throw new Error(`${where}: \`logits\` shape [${logits.shape}] must be [${b}, ${t}, V]`);
  if (t < 2) throw new Error(`${where}: sequences must have at least 2 tokens, but T = ${t}`);
  for (const [name, x] of Object.entries(named)) {
    if (!(x instanceof tf.Tensor) || x.rank !== 2 || x.shape[0] !== b || x.shape[1] !== t) {
      throw new Error(`${where}: \`${name}\` must be a [${b}, ${t}] tensor aligned with \`inputIds\`, but is ${x instanceof tf.Tensor ? `[${x.shape}]` : String(x)}`);
    }
  }
}

/** Per-target beta over columns 1..T-1 ([B, T-1]): by the target's ordinal within its row (positive everywhere, meaningful on targets). */
function betasByOrdinal(isTargetF: tf.Tensor2D, o: ResolvedConstrainedSFTOptions): tf.Tensor2D {
  const shape = isTargetF.shape;
  const ordinal = tf.cumsum(isTargetF, 1); // 1 at a row's first target, 2 at its second, ...
  const early = tf.where(tf.lessEqual(ordinal, tf.fill(shape, o.earlyUntil + 0.5)), tf.fill(shape, o.betaEarly), tf.fill(shape, o.betaLate));
  return tf.where(tf.lessEqual(ordinal, tf.fill(shape, 1.5)), tf.fill(shape, o.betaFirst), early) as tf.Tensor2D;
}

/**
 * The beta each target token gets ([B, T], aligned with inputIds, 0 where targetMask is 0 and in
 * column 0): the k-th target of a row (counting its non-zero targetMask entries from the left,
 * column 0 excluded) gets betaFirst for k = 1, betaEarly for 2 <= k <= earlyUntil, betaLate after.
 * Rows may start their targets at different columns.
 */
export function targetBetas(targetMask: tf.Tensor2D, options: ConstrainedSFTOptions = {}): tf.Tensor2D {
  const o = resolveConstrainedSFTOptions(options);
  if (targetMask.rank !== 2 || targetMask.shape[1] < 1) throw new Error(`targetBetas: \`targetMask\` must be [B, T], but has shape [${targetMask.shape}]`);
  return tf.tidy(() => {
    const [b, t] = targetMask.shape;
    if (t === 1) return tf.zeros([b, 1]) as tf.Tensor2D;
    const isTargetF = tf.cast(tf.notEqual(tf.slice(targetMask, [0, 1], [b, t - 1]), tf.zeros([b, t - 1])), 'float32') as tf.Tensor2D;
    return tf.pad(tf.mul(betasByOrdinal(isTargetF, o), isTargetF), [[0, 0], [1, 0]]) as tf.Tensor2D;
  });
}

export interface ConstrainedSFTTokenLosses {
  /** Per-token loss [B, T] aligned with inputIds (column t: target token t), 0 off targets. */
  losses: tf.Tensor2D;
  /** log p(token t | < t) under the model [B, T] (column 0: 0). */
  logProbs: tf.Tensor2D;
  /** 1 on targets, 0 elsewhere (column 0 always 0) [B, T]. */
  targets: tf.Tensor2D;
  /** Number of target tokens. */
  count: tf.Scalar;
}

/**
 * Per-token constrained-SFT losses. logits [B, T, V] from the model being trained; refLogprobs
 * [B, T] with entry t = log p_ref(token t | tokens < t) (the targets' convention; column 0 and
 * non-target entries are ignored, whatever their values); inputIds [B, T]; targetMask [B, T]
 * (non-zero = target; column 0 ignored). Differentiable w.r.t. logits.
 */
export function constrainedSFTTokenLosses(
  logits: tf.Tensor3D, refLogprobs: tf.Tensor2D, inputIds: tf.Tensor2D, targetMask: tf.Tensor2D, options: ConstrainedSFTOptions = {},
): ConstrainedSFTTokenLosses {
  const o = resolveConstrainedSFTOptions(options);
  checkShapes('constrainedSFT', logits, inputIds, { refLogprobs, targetMask });
  return tf.tidy(() => {
    const [b, t] = inputIds.shape;
    const shape = [b, t - 1];
    const logp = targetLogProbs(logits, inputIds); // [B, T-1]: column s is token s + 1
    const zeros = tf.zeros(shape);
    const isTarget = tf.notEqual(tf.slice(targetMask, [0, 1], shape), zeros);
    const isTargetF = tf.cast(isTarget, 'float32') as tf.Tensor2D;
    // Non-target reference entries may be anything (pads, 1000, NaN): replaced before use, so they
    // reach neither the value nor (via 0 * NaN) the gradient.
    const ref = tf.where(isTarget, tf.cast(tf.slice(refLogprobs, [0, 1], shape), 'float32'), zeros);
    const beta = betasByOrdinal(isTargetF, o);
    let perToken: tf.Tensor;
    if (o.form === 'eq3') {
      // -(2/beta) log sigmoid(beta d) = (2/beta) softplus(-beta d), d = log p - log p_ref.
      // (softplus rather than tf.logSigmoid, whose gradient fails inside variableGrads on the cpu backend.)
      perToken = tf.mul(tf.div(2, beta), tf.softplus(tf.neg(tf.mul(beta, tf.sub(logp, ref)))));
    } else {
      const weight = stopGradient(tf.maximum(tf.mul(2, tf.sigmoid(tf.mul(beta, tf.sub(ref, logp)))), REFERENCE_WEIGHT_MIN));
      perToken = tf.neg(tf.mul(weight, logp));
    }
    const masked = tf.where(isTarget, perToken, zeros);
    const pad = (x: tf.Tensor) => tf.pad(x, [[0, 0], [1, 0]]) as tf.Tensor2D;
    return {
      losses: pad(masked),
      logProbs: pad(logp),
      targets: pad(isTargetF),
      count: tf.sum(isTargetF) as tf.Scalar,
    };
  });
}

/**
 * Token-level mean of the constrained-SFT loss over all target tokens of the batch (0 when there
 * are none). Shapes and conventions as in constrainedSFTTokenLosses.
 */
export function constrainedSFTLoss(
  logits: tf.Tensor3D, refLogprobs: tf.Tensor2D, inputIds: tf.Tensor2D, targetMask: tf.Tensor2D, options: ConstrainedSFTOptions = {},
): tf.Scalar {
  return tf.tidy(() => {
    const { losses, count } = constrainedSFTTokenLosses(logits, refLogprobs, inputIds, targetMask, options);
    return tf.div(tf.sum(losses), tf.maximum(count, 1)) as tf.Scalar;
  });
}

function objectiveName(o: ResolvedConstrainedSFTOptions): string {
  return `constrained_sft[form=${o.form},betaFirst=${o.betaFirst},betaEarly=${o.betaEarly},earlyUntil=${o.earlyUntil},betaLate=${o.betaLate}]`;
}

/**
 * The constrained-SFT objective for the trainer: model logits on batch.inputIds, targets =
 * batch.lossMask, reference log-probs from `batch.extras.refLogprobs` (a [B, T] tensor; build it
 * with `batchExtras: collateRefLogProbs` from examples prepared by `withRefLogProbs`). The name
 * records the options, so a checkpoint only resumes under the same settings. Metrics: `tokens`,
 * `nll` (mean -log p over the targets, comparable with plain SFT's loss) and, for mixed batches,
 * `loss/<source>`.
 */
export function constrainedSFTObjective(options: ConstrainedSFTOptions = {}): Objective {
  const o = resolveConstrainedSFTOptions(options);
  return {
    name: objectiveName(o),
    compute(model, batch) {
      const ref = batch.extras.refLogprobs;
      if (!(ref instanceof tf.Tensor)) {
        throw new Error('constrainedSFTObjective: `batch.extras.refLogprobs` must be a [B, T] tensor of reference log-probs (pass `batchExtras: collateRefLogProbs` to train, with examples from withRefLogProbs)');
      }
      const { logits } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask });
      const pieces = constrainedSFTTokenLosses(logits, ref as tf.Tensor2D, batch.inputIds, batch.lossMask, o);
      const denom = tf.maximum(pieces.count, 1);
      const loss = tf.div(tf.sum(pieces.losses), denom) as tf.Scalar;
      const metrics: Record<string, tf.Scalar> = {
        tokens: pieces.count,
        nll: tf.div(tf.neg(tf.sum(tf.mul(pieces.logProbs, pieces.targets))), denom) as tf.Scalar,
      };
      const names = [...new Set(batch.sources)];
      if (names.length > 1) {
        const perRow = tf.sum(pieces.losses, 1);
        const rowCount = tf.sum(pieces.targets, 1);
        for (const name of names) {
          const select = tf.tensor1d(batch.sources.map((s) => (s === name ? 1 : 0)), 'float32');
          metrics[`loss/${name}`] = tf.div(tf.sum(tf.mul(perRow, select)), tf.maximum(tf.sum(tf.mul(rowCount, select)), 1)) as tf.Scalar;
        }
      }
      return { loss, metrics };
    },
  };
}

/** What referenceLogProbs needs of an example: its token ids. */
export interface TokenSequence {
  ids: readonly number[];
}

export interface ReferenceLogProbsOptions {
  /** Rows per forward pass. Default 16. */
  batchSize?: number;
  /** Id used to right-pad rows within a forward pass (masked out; causal models never see it). Default 0. */
  padId?: number;
}

/**
 * log p_ref(token t | tokens < t) under `model` (the initial model, before fine-tuning), in the
 * targets' convention (entry 0 is 0), computed without a gradient tape:
 * - for a Batch: a [B, T] tensor (0 on padding), ready for `batch.extras.refLogprobs`;
 * - for examples: one number[] per example, of its length, to store as `extras.refLogprobs`
 *   (see withRefLogProbs) so the trainer's batches can carry them (collateRefLogProbs).
 */
export function referenceLogProbs(model: CausalLM, batch: Batch): tf.Tensor2D;
export function referenceLogProbs(model: CausalLM, examples: readonly TokenSequence[], options?: ReferenceLogProbsOptions): number[][];
export function referenceLogProbs(model: CausalLM, source: Batch | readonly TokenSequence[], options: ReferenceLogProbsOptions = {}): tf.Tensor2D | number[][] {
  if (!Array.isArray(source)) {
    const batch = source as Batch;
    const [b, t] = batch.inputIds.shape;
    if (t < 2) return tf.zeros([b, t]) as tf.Tensor2D;
    return tf.tidy(() => {
      const { logits } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask });
      const lp = tf.pad(targetLogProbs(logits, batch.inputIds), [[0, 0], [1, 0]]);
      return tf.where(tf.cast(batch.attentionMask, 'bool'), lp, tf.zerosLike(lp)) as tf.Tensor2D;
    });
  }
  const examples = source as readonly TokenSequence[];
  const batchSize = options.batchSize ?? 16;
  const padId = options.padId ?? 0;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`referenceLogProbs: \`batchSize\` must be a positive integer, but is ${batchSize}`);
  if (!Number.isInteger(padId) || padId < 0) throw new Error(`referenceLogProbs: \`padId\` must be a token id (integer >= 0), but is ${padId}`);
  examples.forEach((e, i) => {
    if (!e || !Array.isArray(e.ids) || e.ids.length === 0) throw new Error(`referenceLogProbs: example ${i} has no \`ids\``);
  });
  const out: number[][] = [];
  for (let start = 0; start < examples.length; start += batchSize) {
    const chunk = examples.slice(start, start + batchSize);
    const length = Math.max(...chunk.map((e) => e.ids.length));
    if (length < 2) {
      chunk.forEach((e) => out.push(e.ids.map(() => 0)));
      continue;
    }
    const ids = new Int32Array(chunk.length * length).fill(padId);
    const attention = new Int32Array(chunk.length * length);
    chunk.forEach((e, r) => e.ids.forEach((id, t) => {
      ids[r * length + t] = id;
      attention[r * length + t] = 1;
    }));
    const values = tf.tidy(() => {
      const inputIds = tf.tensor2d(ids, [chunk.length, length], 'int32');
      const { logits } = model.forward(inputIds, { attentionMask: tf.tensor2d(attention, [chunk.length, length], 'int32') });
      return targetLogProbs(logits, inputIds).dataSync(); // [n, length - 1]
    });
    chunk.forEach((e, r) => {
      const row = [0];
      for (let t = 1; t < e.ids.length; t++) row.push(values[r * (length - 1) + t - 1]);
      out.push(row);
    });
  }
  return out;
}

/** Copies of `examples` with `extras.refLogprobs` (number[]) from the reference model. */
export function withRefLogProbs<E extends { ids: number[]; extras?: Record<string, unknown> }>(
  model: CausalLM, examples: readonly E[], options: ReferenceLogProbsOptions = {},
): E[] {
  const ref = referenceLogProbs(model, examples, options);
  return examples.map((e, i) => ({ ...e, extras: { ...(e.extras ?? {}), refLogprobs: ref[i] } }));
}

/**
 * The trainer's `batchExtras` for constrained SFT: `{ refLogprobs }`, a [B, T] float32 tensor of
 * the examples' `extras.refLogprobs`, right-padded with 0 to the longest example (as `collate`
 * pads the ids). Every example must carry refLogprobs of its own length.
 */
export function collateRefLogProbs(examples: readonly { ids: readonly number[]; extras?: Record<string, unknown> }[]): { refLogprobs: tf.Tensor2D } {
  if (examples.length === 0) throw new Error('collateRefLogProbs: `examples` is empty');
  const length = Math.max(...examples.map((e) => e.ids.length));
  const data = new Float32Array(examples.length * length);
  examples.forEach((e, r) => {
    const ref = e.extras?.refLogprobs;
    if (!Array.isArray(ref) || ref.length !== e.ids.length) {
      throw new Error(`collateRefLogProbs: example ${r} needs \`extras.refLogprobs\` with one entry per id (${e.ids.length}), but has ${Array.isArray(ref) ? `${ref.length} entries` : String(ref)}; prepare examples with withRefLogProbs`);
    }
    ref.forEach((x, t) => {
      data[r * length + t] = x as number;
    });
  });
  return { refLogprobs: tf.tensor2d(data, [examples.length, length], 'float32') };
}
