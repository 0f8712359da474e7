// DeRTa (Yuan et al. 2024, "Refuse Whenever You Feel Unsafe: Improving Safety in LLMs via Decoupled
// Refusal Training"; code: github.com/RobustNLP/DeRTa), read from the authors' training scripts
// (run_files/run_clm_lora_derta_llama.py, run_clm_llms_derta_llama_drop_5_percent.py) and data
// builder (data/train/generate_training_data.py). No code of theirs is copied here. Two parts:
//
// 1. MLE with a harmful response prefix: x + h[:k] + r + eos, loss on r + eos only (Qi et al.'s
//    recovery examples with DeRTa's k): k = 0 for one example in three, else k ~ U{1, .., |h| - 2}
//    (their randint over words; here over tokens, U{1, .., min(maxK, |h|) - 1}:
//    sampleAugmentationExamples with prefixProbability 2/3 and kInclusiveUpper false).
// 2. Reinforced Transition Optimization (RTO): on x + h + eos (the full harmful answer), at every
//    response position the target is the refusal token s instead of the next harmful token:
//        RTO(x, h) = sum_{i = 0}^{|h|} -log p_theta(s | x + h[:i])
//    (i = 0 is the bare request, i = |h| the position after the whole answer, where eos stood).
//    The authors replace every response label of such a row by one fixed id (19701, Llama-3's
//    "Sorry"); here s is each example's own first refusal token by default, or a fixed id.
//
// Averaging, as their code: one CrossEntropyLoss over every labelled position of the batch, so the
// RTO positions and the MLE targets (safety and helpfulness rows) share one token-level mean:
//        L = ( sum_{MLE targets t} -log p(y_t | y_<t) + sum_{RTO rows b} sum_{i in K_b} -log p(s_b | x_b + h_b[:i]) )
//            / ( N_MLE + sum_b |K_b| )
// K_b = {0, .., |h_b|} (every position: their LoRA script) or a subset: their full-parameter
// script keeps max(1, ceil(T / 20)) random positions of each padded row of length T (~5% of the
// positions, redrawn at every forward). Here `keepFraction` keeps max(1, ceil(keepFraction *
// (|h| + 1))) positions of the RTO span, drawn once per pool example from a seeded generator
// (lib/train/derta.ts); keepFraction 1 (default) keeps every position.
//
// An RTO example carries its span as `extras.rto = { start, length, token, keep? }`: start = |x|
// (the first harmful token's position), length = |h| + 1 (positions predicting h[0], .., h[|h|-1]
// and the end-of-response), token = s, keep = the kept offsets i (all when absent); its loss mask
// is all 0 (no MLE target). collateRtoSpans is the trainer's batchExtras.

import { crossEntropy, tf } from '../engine/index.js';
import { maskedCrossEntropy, perSourceLosses, type MaskedCrossEntropy } from './crossEntropy.js';
import type { Batch, Objective } from './types.js';

export interface RtoSpan {
  /** Position of the first harmful token (the prompt's length). */
  start: number;
  /** |h| + 1: the RTO positions predict from x + h[:i], i = 0..length - 1. */
  length: number;
  /** The refusal token s. */
  token: number;
  /** Kept offsets i in [0, length), strictly increasing; absent: every offset. */
  keep?: number[];
}

export interface DertaOptions {
  /** Share of each step's safety rows that are RTO rows (the authors: 3000 RTO + 3000 MLE-prefix examples, 0.5). Default 0.5. */
  rtoShare?: number;
  /** Share of each RTO row's positions kept (1: every position, their LoRA script; 0.05: their full-parameter script). Default 1. */
  keepFraction?: number;
  /** A fixed refusal token id s for every RTO row (the authors' "Sorry"); null (default): each behaviour's first refusal token. */
  refusalToken?: number | null;
}

export type ResolvedDertaOptions = { rtoShare: number; keepFraction: number; refusalToken: number | null };

export const DERTA_DEFAULTS: Readonly<ResolvedDertaOptions> = Object.freeze({ rtoShare: 0.5, keepFraction: 1, refusalToken: null });

/** DeRTa's share of MLE-prefix examples with a harmful prefix (k > 0): two in three. */
export const DERTA_PREFIX_PROBABILITY = 2 / 3;

/** Defaults filled in and checked; errors name the option. */
export function resolveDertaOptions(options: DertaOptions = {}): ResolvedDertaOptions {
  if (typeof options !== 'object' || options === null) throw new Error(`derta: options must be an object, but are ${String(options)}`);
  for (const key of Object.keys(options)) if (!['rtoShare', 'keepFraction', 'refusalToken'].includes(key)) throw new Error(`derta: unknown option \`${key}\` (known: rtoShare, keepFraction, refusalToken)`);
  const rtoShare = options.rtoShare ?? DERTA_DEFAULTS.rtoShare;
  if (typeof rtoShare !== 'number' || !(rtoShare > 0 && rtoShare < 1)) throw new Error(`derta: \`rtoShare\` must be a number in (0, 1), but is ${String(rtoShare)}`);
  const keepFraction = options.keepFraction ?? DERTA_DEFAULTS.keepFraction;
  if (typeof keepFraction !== 'number' || !(keepFraction > 0 && keepFraction <= 1)) throw new Error(`derta: \`keepFraction\` must be a number in (0, 1], but is ${String(keepFraction)}`);
  const refusalToken = options.refusalToken ?? null;
  if (refusalToken !== null && (typeof refusalToken !== 'number' || !Number.isInteger(refusalToken) || refusalToken < 0)) {
    throw new Error(`derta: \`refusalToken\` must be a token id (an integer >= 0) or null, but is ${String(refusalToken)}`);
  }
  return { rtoShare, keepFraction, refusalToken };
}

/** The RTO example of (x, h): ids x + h + eos, no MLE target, `extras.rto` its span. */
export function rtoExample(prompt: readonly number[], harmful: readonly number[], eos: number, token: number, keep?: readonly number[]): { ids: number[]; lossMask: number[]; extras: { rto: RtoSpan } } {
  if (!Array.isArray(prompt) || prompt.length === 0) throw new Error('rtoExample: `prompt` is empty');
  if (!Array.isArray(harmful)) throw new Error('rtoExample: `harmful` must be token ids');
  const ids = [...prompt, ...harmful, eos];
  const span: RtoSpan = { start: prompt.length, length: harmful.length + 1, token, ...(keep ? { keep: [...keep] } : {}) };
  checkRtoSpan(span, ids.length, 'rtoExample');
  return { ids, lossMask: ids.map(() => 0), extras: { rto: span } };
}

/** The kept offsets of an RTO span of `length` positions: max(1, ceil(keepFraction * length)) of them, uniformly without replacement from `next`, sorted; every offset when keepFraction is 1. */
export function rtoKeptPositions(length: number, keepFraction: number, next: () => number): number[] {
  if (!Number.isInteger(length) || length < 1) throw new Error(`rtoKeptPositions: \`length\` must be a positive integer, but is ${length}`);
  const all = Array.from({ length }, (_, i) => i);
  if (keepFraction >= 1) return all;
  const count = Math.max(1, Math.ceil(keepFraction * length));
  for (let i = 0; i < count; i++) {
    const k = i + Math.floor(next() * (length - i));
    [all[i], all[k]] = [all[k], all[i]];
  }
  return all.slice(0, count).sort((a, b) => a - b);
}

function checkRtoSpan(span: unknown, rowLength: number, where: string): RtoSpan {
  const s = span as RtoSpan;
  if (typeof s !== 'object' || s === null || !Number.isInteger(s.start) || !Number.isInteger(s.length) || !Number.isInteger(s.token) || s.token < 0) {
    throw new Error(`${where}: \`extras.rto\` must be { start, length, token, keep? } with integer fields, but is ${JSON.stringify(span)}`);
  }
  if (s.start < 1 || s.length < 1 || s.start + s.length > rowLength) {
    throw new Error(`${where}: RTO span { start: ${s.start}, length: ${s.length} } must satisfy start >= 1, length >= 1 and start + length <= the row's ${rowLength} tokens`);
  }
  if (s.keep !== undefined && (!Array.isArray(s.keep) || s.keep.length === 0 || s.keep.some((i, k) => !Number.isInteger(i) || i < 0 || i >= s.length || (k > 0 && i <= s.keep![k - 1])))) {
    throw new Error(`${where}: RTO span \`keep\` must be strictly increasing offsets in [0, ${s.length}), but is ${JSON.stringify(s.keep)}`);
  }
  return s;
}

/** What collateRtoSpans adds to a batch's extras. */
export type RtoExtras = { rtoSpans: (RtoSpan | null)[] };

/** The trainer's `batchExtras` for DeRTa: each example's RTO span (checked against its length) or null. */
export function collateRtoSpans(examples: readonly { ids: readonly number[]; extras?: Record<string, unknown> }[]): RtoExtras {
  if (examples.length === 0) throw new Error('collateRtoSpans: `examples` is empty');
  return { rtoSpans: examples.map((e, r) => (e.extras?.rto === undefined ? null : checkRtoSpan(e.extras.rto, e.ids.length, `collateRtoSpans (example ${r})`))) };
}

/** Flat [B*T] indices of the RTO positions (row b, column start - 1 + i) with their rows and target tokens. */
export function rtoPositions(spans: readonly (RtoSpan | null)[], width: number): { flat: number[]; rows: number[]; tokens: number[] } {
  const flat: number[] = [];
  const rows: number[] = [];
  const tokens: number[] = [];
  spans.forEach((s, b) => {
    if (!s) return;
    checkRtoSpan(s, width, `rtoPositions (row ${b})`);
    for (const i of s.keep ?? Array.from({ length: s.length }, (_, k) => k)) {
      flat.push(b * width + s.start - 1 + i);
      rows.push(b);
      tokens.push(s.token);
    }
  });
  return { flat, rows, tokens };
}

/**
 * The RTO term of a batch, as cross-entropy pieces: per row the sum of -log p(s | x + h[:i]) over
 * its kept positions and their count (0 for rows without a span); logits [B, T, V] of right-padded
 * rows. Differentiable in the logits.
 */
export function rtoTerm(logits: tf.Tensor3D, spans: readonly (RtoSpan | null)[]): MaskedCrossEntropy {
  const [B, T, V] = logits.shape;
  if (spans.length !== B) throw new Error(`rtoTerm: ${spans.length} spans for ${B} rows`);
  const { flat, rows, tokens } = rtoPositions(spans, T);
  tokens.forEach((t) => {
    if (t >= V) throw new Error(`rtoTerm: refusal token ${t} is not in the vocabulary [0, ${V})`);
  });
  return tf.tidy(() => {
    const counts = new Float32Array(B);
    rows.forEach((b) => counts[b]++);
    const rowCount = tf.tensor1d(counts, 'float32');
    if (flat.length === 0) {
      const perRow = tf.zeros([B]) as tf.Tensor1D;
      return { sum: tf.scalar(0), count: tf.scalar(0), perRow, rowCount };
    }
    const N = flat.length;
    const picked = tf.gather(tf.reshape(logits, [B * T, V]), tf.tensor1d(flat, 'int32')); // [N, V]
    const nll = crossEntropy(tf.reshape(picked, [1, N, V]), tf.tensor2d(tokens, [1, N], 'int32')); // [1, N]
    const select = new Float32Array(B * N);
    rows.forEach((b, k) => (select[b * N + k] = 1));
    const perRow = tf.sum(tf.mul(tf.tensor2d(select, [B, N]), nll), 1) as tf.Tensor1D;
    return { sum: tf.sum(perRow) as tf.Scalar, count: tf.sum(rowCount) as tf.Scalar, perRow, rowCount };
  });
}

function rtoSpansOf(batch: Batch, where: string): (RtoSpan | null)[] {
  const spans = (batch.extras as { rtoSpans?: unknown }).rtoSpans;
  const B = batch.inputIds.shape[0];
  if (!Array.isArray(spans) || spans.length !== B) throw new Error(`${where}: the batch needs \`extras.rtoSpans\` (${B} entries); pass collateRtoSpans as the trainer's batchExtras and give RTO examples \`extras.rto\``);
  return spans as (RtoSpan | null)[];
}

/**
 * DeRTa's loss (see the header): MLE targets and RTO positions in one token-level mean. Metrics:
 * tokens (MLE targets + RTO positions), loss/ce (the MLE mean), rto (the RTO mean), and per-source
 * losses over both (an RTO source's is its RTO mean).
 */
export function dertaObjective(): Objective {
  const name = 'derta(mle+rto)';
  return {
    name,
    compute(model, batch) {
      const spans = rtoSpansOf(batch, name);
      const { logits } = model.forward(batch.inputIds, { attentionMask: batch.attentionMask });
      const ce = maskedCrossEntropy(logits, batch.inputIds, batch.lossMask);
      const rto = rtoTerm(logits, spans);
      const count = tf.add(ce.count, rto.count) as tf.Scalar;
      const loss = tf.div(tf.add(ce.sum, rto.sum), tf.maximum(count, 1)) as tf.Scalar;
      const both: MaskedCrossEntropy = { sum: tf.add(ce.sum, rto.sum) as tf.Scalar, count, perRow: tf.add(ce.perRow, rto.perRow) as tf.Tensor1D, rowCount: tf.add(ce.rowCount, rto.rowCount) as tf.Tensor1D };
      return {
        loss,
        metrics: {
          tokens: count, 'loss/ce': tf.div(ce.sum, tf.maximum(ce.count, 1)) as tf.Scalar, rto: tf.div(rto.sum, tf.maximum(rto.count, 1)) as tf.Scalar,
          ...perSourceLosses(both, batch.sources),
        },
      };
    },
  };
}
