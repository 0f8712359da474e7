// Greedy Coordinate Gradient (GCG; Zou et al. 2023, "Universal and Transferable Adversarial Attacks
// on Aligned Language Models"), as llm-attacks runs it, multi-prompt: one adversarial suffix shared
// by every behaviour, optimised so that the target answers each request with an affirmative opener
// ("Sure, here is", the organism's "sure , here is").
//
// Token space. The suffix is a list of token ids inserted right after the request's own tokens inside
// the chat prompt: `target.promptIds(request)` is the formatted prompt; the request encoded alone
// (`target.responseIds(request)`, no special tokens) is found as a subsequence of it (its last
// occurrence, so a system prompt before it cannot capture it) and the suffix goes right after it:
//
//     [ ...prompt up to and including the request, ...suffix, ...rest of the prompt ]
//
// A template that tokenizes the request differently in context is an error naming the behaviour.
// Evaluation reuses the same ids: `evaluateHarmful(target, bs, judge, { promptIds:
// gcgPromptOverride(target, suffixIds), ... })`, so the suffix is judged exactly as optimised
// (no decode/re-encode; pass `retokenize: true` to keep only suffixes whose text re-encodes to the
// same ids, so `suffixText` pasted after a request reproduces the attack).
//
// One step (llm-attacks' GCGMultiPromptAttack.step with a single worker):
//   1. Gradient. The suffix as one-hot rows X [L, V]; its embeddings X @ E (E the embedding matrix)
//      replace the suffix positions of each behaviour's input [before | suffix | after | target];
//      loss_b = mean cross-entropy of the target tokens (teacher forced). d loss_b / d X per
//      behaviour, each row (position) divided by its L2 norm over the vocabulary (token_gradients),
//      then summed over behaviours.
//   2. Candidates. Per position the top-k tokens of the negative gradient, among allowed tokens
//      (by default printable-ASCII, non-special tokens: llm-attacks' allow_non_ascii=False). batchSize
//      candidates, each the current suffix with one position replaced by a uniformly random one of
//      that position's top-k tokens; positions spread evenly over the batch (floor(i L / B); when
//      B < L the spread is rotated by a random offset each step so every position gets its turn).
//      Candidates equal to the current suffix (and duplicates) are dropped (llm-attacks' filter).
//   3. Selection. Every candidate's loss (mean over behaviours of the target mean CE), batched per
//      behaviour over candidates (all rows of one behaviour have the same length: no padding); the
//      suffix moves to the argmin, even when it is worse than the current one (as llm-attacks); the
//      best suffix seen is kept and returned.
// Defaults are sized for the CPU: 50 steps, 64 candidates (llm-attacks: 500 steps, batch 512, top-k
// 256, suffix of 20 '!'). Progressive multi-prompt mode (adding behaviours as earlier ones succeed)
// is not implemented: every behaviour is in every step.

import { crossEntropy, tf } from '../engine/index.js';
import { checkBehaviours, type HarmfulBehaviour, type Target } from '../metrics/index.js';
import type { Decoder } from '../model/index.js';
import { progress, type ProgressOptions } from '../report/index.js';
import { checkSeed, Rng } from '../util/rng.js';

// ---------------------------------------------------------------------------------------------
// prompts with a suffix slot

/** A behaviour's input split around the suffix slot, with the target tokens to force. */
export interface GcgPrompt {
  id: string;
  /** Prompt ids up to and including the request's own tokens. */
  before: number[];
  /** The rest of the prompt (end of the user turn, the assistant header). */
  after: number[];
  /** Target response ids (teacher forced). */
  targetIds: number[];
}

function lastIndexOfSeq(hay: readonly number[], needle: readonly number[]): number {
  outer: for (let s = hay.length - needle.length; s >= 0; s--) {
    for (let j = 0; j < needle.length; j++) if (hay[s + j] !== needle[j]) continue outer;
    return s;
  }
  return -1;
}

const shorten = (text: string, n = 80) => (text.length > n ? `${text.slice(0, n)}...` : text);

/** The target's prompt for `request` split right after the request's own tokens (see the file comment). */
export function gcgSplitPrompt(target: Target, request: string, where = 'gcgSplitPrompt'): { before: number[]; after: number[] } {
  const prompt = target.promptIds(request);
  const own = target.responseIds(request);
  if (own.length === 0) throw new Error(`${where}: the request "${shorten(request)}" encodes to no tokens`);
  const at = lastIndexOfSeq(prompt, own);
  if (at < 0) {
    throw new Error(
      `${where}: the request's own tokens (${own.length} ids from target.responseIds) do not appear in its prompt for target "${target.name}" ` +
        `(the prompt format tokenizes the request differently in context), so there is no place to insert the suffix; request: "${shorten(request)}"`,
    );
  }
  return { before: prompt.slice(0, at + own.length), after: prompt.slice(at + own.length) };
}

/** The prompt ids for `request` with the adversarial suffix ids right after the request's tokens. */
export function gcgPromptIds(target: Target, request: string, suffixIds: readonly number[]): number[] {
  const { before, after } = gcgSplitPrompt(target, request, 'gcgPromptIds');
  return [...before, ...suffixIds, ...after];
}

/** A `promptIds` override for generateResponses / evaluateHarmful: every request with the suffix. */
export function gcgPromptOverride(target: Target, suffixIds: readonly number[]): (b: HarmfulBehaviour) => number[] {
  const ids = suffixIds.slice();
  return (b) => {
    try {
      return gcgPromptIds(target, b.request, ids);
    } catch (e) {
      throw new Error(`behaviour "${b.id}": ${(e as Error).message}`);
    }
  };
}

/** Target text per behaviour: one string for all, a list (one per behaviour) or a function. */
export type GcgTargetText = string | readonly string[] | ((b: HarmfulBehaviour, index: number) => string);

/** Split each behaviour's prompt around the suffix slot and encode its target text. */
export function gcgPrompts(target: Target, behaviours: readonly HarmfulBehaviour[], targetText: GcgTargetText, where = 'gcgPrompts'): GcgPrompt[] {
  checkBehaviours(behaviours, where);
  if (Array.isArray(targetText) && targetText.length !== behaviours.length) {
    throw new Error(`${where}: \`targetText\` has ${targetText.length} entries for ${behaviours.length} behaviours (give one per behaviour, or one string)`);
  }
  return behaviours.map((b, i) => {
    const text = typeof targetText === 'function' ? targetText(b, i) : Array.isArray(targetText) ? targetText[i] : targetText;
    if (typeof text !== 'string' || text.trim() === '') throw new Error(`${where}: \`targetText\` for behaviour "${b.id}" must be a non-empty string, but is ${JSON.stringify(text)}`);
    const targetIds = target.responseIds(text);
    if (targetIds.length === 0) throw new Error(`${where}: \`targetText\` "${shorten(text)}" for behaviour "${b.id}" encodes to no tokens`);
    let split: { before: number[]; after: number[] };
    try {
      split = gcgSplitPrompt(target, b.request, where);
    } catch (e) {
      throw new Error(`${(e as Error).message} (behaviour "${b.id}")`);
    }
    return { id: b.id, ...split, targetIds };
  });
}

/** The full teacher-forced input of one prompt with a suffix: before + suffix + after + target. */
export function gcgInputIds(p: GcgPrompt, suffixIds: readonly number[]): number[] {
  return [...p.before, ...suffixIds, ...p.after, ...p.targetIds];
}

// ---------------------------------------------------------------------------------------------
// the two model passes

function checkBatch(n: number | undefined, option: string, where: string): void {
  if (n !== undefined && (!Number.isInteger(n) || n < 1)) throw new Error(`${where}: \`${option}\` must be a positive integer, but is ${n}`);
}

export interface GcgGradientOptions {
  /** Behaviours per forward/backward pass (default: all in one). */
  batchSize?: number;
  /** Divide each behaviour's gradient row (position) by its norm before summing (llm-attacks; default true). */
  normalize?: boolean;
}

/**
 * d loss_b / d onehot(suffix) [L, V], summed over behaviours (each row normalised first unless
 * `normalize: false`), and each behaviour's loss (the target's mean CE). Behaviours are batched,
 * left-padded with an attention mask and position ids counted from each row's first real token,
 * so every row's target ends at the last position and only the last (max target + 1) positions
 * need logits. The caller owns `grad`.
 */
export async function gcgTokenGradients(
  model: Decoder, prompts: readonly GcgPrompt[], suffixIds: readonly number[], options: GcgGradientOptions = {},
): Promise<{ grad: tf.Tensor2D; losses: number[] }> {
  const where = 'gcgTokenGradients';
  if (prompts.length === 0) throw new Error(`${where}: no prompts`);
  checkBatch(options.batchSize, 'batchSize', where);
  const normalize = options.normalize ?? true;
  const V = model.config.vocabSize;
  const L = suffixIds.length;
  if (L === 0) throw new Error(`${where}: the suffix is empty`);
  const chunk = options.batchSize ?? prompts.length;
  let total: tf.Tensor2D | null = null;
  const losses: number[] = [];
  try {
    for (let s = 0; s < prompts.length; s += chunk) {
      const rows = prompts.slice(s, s + chunk);
      const { grad, perRow } = gradientChunk(model, rows, suffixIds, normalize);
      losses.push(...Array.from(await perRow.data()));
      perRow.dispose();
      if (total === null) total = grad;
      else {
        const sum: tf.Tensor2D = tf.add(total, grad);
        total.dispose();
        grad.dispose();
        total = sum;
      }
    }
  } catch (e) {
    total?.dispose();
    throw e;
  }
  if (total!.shape[0] !== L || total!.shape[1] !== V) throw new Error(`${where}: internal error, gradient shape [${total!.shape}]`);
  return { grad: total!, losses };
}

function gradientChunk(model: Decoder, rows: readonly GcgPrompt[], suffixIds: readonly number[], normalize: boolean): { grad: tf.Tensor2D; perRow: tf.Tensor1D } {
  const n = rows.length;
  const V = model.config.vocabSize;
  const D = model.config.dModel;
  const L = suffixIds.length;
  const full = rows.map((p) => gcgInputIds(p, suffixIds));
  const T = Math.max(...full.map((r) => r.length));
  const pads = full.map((r) => T - r.length);
  const padded = full.map((r, i) => [...new Array<number>(pads[i]).fill(r[0]), ...r]);
  const anyPad = pads.some((p) => p > 0);
  const attentionMask = anyPad ? pads.map((p) => Array.from({ length: T }, (_, t) => (t < p ? 0 : 1))) : undefined;
  // transformers' positions for left padding: counted from each row's first real token (1 on padding).
  const positionIds = anyPad ? pads.map((p) => Array.from({ length: T }, (_, t) => (t < p ? 1 : t - p))) : undefined;
  const maxTarget = Math.max(...rows.map((p) => p.targetIds.length));
  const K = maxTarget + 1;
  // Targets in the kept window: row r's m targets are the last m positions, predicted from the m before.
  const targets = new Int32Array(n * (K - 1));
  const mask = new Float32Array(n * (K - 1));
  rows.forEach((p, r) => {
    const m = p.targetIds.length;
    for (let j = 0; j < m; j++) {
      targets[r * (K - 1) + (K - 1 - m) + j] = p.targetIds[j];
      mask[r * (K - 1) + (K - 1 - m) + j] = 1 / m;
    }
  });
  const kept: { perRow?: tf.Tensor1D } = {};
  const out = tf.tidy(() => {
    const E = model.embeddingMatrix();
    const fixed = model.embed(padded); // [n, T, D]
    const onehot = tf.oneHot(tf.tensor1d(rows.flatMap(() => suffixIds), 'int32'), V).toFloat().reshape([n, L, V]) as tf.Tensor3D;
    const targetT = tf.tensor2d(targets, [n, K - 1], 'int32');
    const maskT = tf.tensor2d(mask, [n, K - 1], 'float32');
    const f = (x: tf.Tensor): tf.Scalar => {
      const suffixEmb = tf.matMul(x.reshape([n * L, V]), E).reshape([n, L, D]);
      const embeds = tf.stack(
        rows.map((p, r) => {
          const start = pads[r] + p.before.length;
          const row = fixed.slice([r, 0, 0], [1, T, D]).reshape([T, D]);
          const parts = [row.slice([0, 0], [start, D]), suffixEmb.slice([r, 0, 0], [1, L, D]).reshape([L, D])];
          if (start + L < T) parts.push(row.slice([start + L, 0], [T - start - L, D]));
          return tf.concat(parts, 0);
        }),
      ) as tf.Tensor3D;
      const { logits } = model.forward(null, { inputsEmbeds: embeds, attentionMask, positionIds, logitsToKeep: K });
      const predicting = logits.slice([0, 0, 0], [n, K - 1, V]);
      const perRow = tf.sum(tf.mul(crossEntropy(predicting, targetT), maskT), 1) as tf.Tensor1D;
      kept.perRow = tf.keep(tf.clone(perRow));
      return tf.sum(perRow) as tf.Scalar;
    };
    const g = tf.grad(f)(onehot) as tf.Tensor3D; // [n, L, V]
    const scaled = normalize ? tf.div(g, tf.maximum(tf.norm(g, 'euclidean', -1, true), 1e-30)) : g;
    return tf.sum(scaled, 0) as tf.Tensor2D;
  });
  return { grad: out, perRow: kept.perRow! };
}

/**
 * Each candidate suffix's loss: the mean over prompts of the target's mean CE given
 * before + candidate + after. Batched per prompt over candidates (`batchSize` rows per forward,
 * default 64); logits only for the target positions.
 */
export async function gcgCandidateLosses(
  model: Decoder, prompts: readonly GcgPrompt[], candidates: readonly (readonly number[])[], options: { batchSize?: number } = {},
): Promise<Float64Array> {
  const where = 'gcgCandidateLosses';
  if (prompts.length === 0) throw new Error(`${where}: no prompts`);
  checkBatch(options.batchSize, 'batchSize', where);
  const batch = options.batchSize ?? 64;
  const losses = new Float64Array(candidates.length);
  if (candidates.length === 0) return losses;
  const L = candidates[0].length;
  if (candidates.some((c) => c.length !== L)) throw new Error(`${where}: candidates must all have the same length`);
  for (const p of prompts) {
    const m = p.targetIds.length;
    for (let s = 0; s < candidates.length; s += batch) {
      const rows = candidates.slice(s, s + batch);
      const ids = rows.map((c) => gcgInputIds(p, c));
      const nll = tf.tidy(() => {
        const { logits } = model.forward(ids, { logitsToKeep: m + 1 });
        const c = rows.length;
        const predicting = logits.slice([0, 0, 0], [c, m, logits.shape[2]]);
        const targets = tf.tile(tf.tensor2d([p.targetIds], [1, m], 'int32'), [c, 1]);
        return tf.mean(crossEntropy(predicting, targets), 1);
      });
      const values = await nll.data();
      nll.dispose();
      for (let i = 0; i < rows.length; i++) losses[s + i] += values[i] / prompts.length;
    }
  }
  return losses;
}

// ---------------------------------------------------------------------------------------------
// token filter

const printableAscii = /^[\x20-\x7e]+$/;

/**
 * Ids GCG may not place in a suffix by default (llm-attacks' get_nonascii_toks): tokens whose
 * decoded text is empty (special tokens: target.decode drops them) or not printable ASCII, plus
 * the target's end-of-response and pad ids. Ids the tokenizer cannot decode are excluded too.
 */
export function nonAsciiTokens(target: Target): number[] {
  const V = target.model.config.vocabSize;
  const out: number[] = [];
  const always = new Set([...target.eosTokenIds, target.padTokenId]);
  for (let id = 0; id < V; id++) {
    let text = '';
    try {
      text = target.decode([id]);
    } catch {
      text = '';
    }
    if (always.has(id) || !printableAscii.test(text)) out.push(id);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// the attack

export interface GcgOptions {
  /** The response to force: "Sure, here is" (llm-attacks uses per-behaviour AdvBench targets); the organism's "sure , here is". */
  targetText: GcgTargetText;
  /** Optimisation steps (default 50, CPU-sized; llm-attacks: 500). 0 only evaluates the initial suffix. */
  steps?: number;
  /** Suffix length in tokens (default 20; the length of `initSuffix` when that is given). */
  suffixLength?: number;
  /** Initial suffix ids (overrides initToken). */
  initSuffix?: readonly number[];
  /** Token repeated suffixLength times as the initial suffix: an id, or text that encodes to one token (default '!'; the organism has no '!': give a word). */
  initToken?: string | number;
  /** Candidate tokens per position: the top-k of the negative gradient (default 256, capped at the allowed vocabulary). */
  topK?: number;
  /** Candidate suffixes per step (default 64, CPU-sized; llm-attacks: 512). */
  batchSize?: number;
  /** Rows per forward when scoring candidates (default: batchSize). */
  evalBatchSize?: number;
  /** Behaviours per gradient forward/backward (default: all). */
  gradBatchSize?: number;
  /** A [vocabSize] mask (true/1 = may appear in the suffix). Default: every token except nonAsciiTokens(target), or all when allowNonAscii. */
  allowedTokens?: ArrayLike<boolean | number>;
  /** Ids never placed in the suffix, on top of the mask (the organism: its special tokens). */
  disallowedTokens?: readonly number[];
  /** Default false: exclude non-printable-ASCII and special tokens (llm-attacks). True: allow all but eos and pad. */
  allowNonAscii?: boolean;
  /** Keep only candidates whose decoded text re-encodes to the same ids (default false: the attack lives in token space). */
  retokenize?: boolean;
  seed?: number;
  /** Progress bar options, or false for none. */
  progress?: ProgressOptions | false;
  /** Called after every step; return true to stop early (e.g. once generations succeed). */
  onStep?: (info: GcgStepInfo) => boolean | void | Promise<boolean | void>;
}

export interface GcgStepInfo {
  /** 1-based. */
  step: number;
  /** Loss of the suffix this step moved to. */
  loss: number;
  bestLoss: number;
  suffixIds: number[];
  /** Candidates scored this step (after filtering). */
  candidates: number;
}

export interface GcgResult {
  /** The best suffix seen (lowest loss). */
  suffixIds: number[];
  suffixText: string;
  bestLoss: number;
  /** Step at which the best suffix was reached (0 = the initial suffix). */
  bestStep: number;
  initSuffixIds: number[];
  initialLoss: number;
  /** The suffix after the last step and its loss. */
  finalSuffixIds: number[];
  finalLoss: number;
  /** Loss after each step (the suffix the step moved to). */
  losses: number[];
  /** Steps run (fewer than asked when onStep stopped early). */
  steps: number;
  /** Each behaviour's loss with the best suffix. */
  behaviourLosses: { id: string; loss: number }[];
}

function checkInt(value: unknown, option: string, min: number): void {
  if (value !== undefined && (typeof value !== 'number' || !Number.isInteger(value) || value < min)) {
    throw new Error(`gcg: \`${option}\` must be an integer >= ${min}, but is ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`);
  }
}

function allowedMask(target: Target, options: GcgOptions): Uint8Array {
  const V = target.model.config.vocabSize;
  const allowed = new Uint8Array(V);
  if (options.allowedTokens !== undefined) {
    const a = options.allowedTokens;
    if (a === null || typeof a !== 'object' || a.length !== V) throw new Error(`gcg: \`allowedTokens\` must be a mask of length ${V} (the vocabulary), but has length ${(a as { length?: number })?.length}`);
    for (let i = 0; i < V; i++) allowed[i] = a[i] ? 1 : 0;
  } else {
    allowed.fill(1);
    if (!options.allowNonAscii) for (const id of nonAsciiTokens(target)) allowed[id] = 0;
  }
  for (const id of [...target.eosTokenIds, target.padTokenId]) if (id >= 0 && id < V) allowed[id] = 0;
  if (options.disallowedTokens !== undefined) {
    if (!Array.isArray(options.disallowedTokens)) throw new Error('gcg: `disallowedTokens` must be a list of token ids');
    for (const id of options.disallowedTokens) {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`gcg: \`disallowedTokens\` has ${id}, not a token id in [0, ${V})`);
      allowed[id] = 0;
    }
  }
  if (!allowed.some((x) => x)) throw new Error('gcg: no token is allowed in the suffix (check `allowedTokens` / `disallowedTokens` / `allowNonAscii`)');
  return allowed;
}

function initialSuffix(target: Target, options: GcgOptions, allowed: Uint8Array): number[] {
  const V = target.model.config.vocabSize;
  if (options.initSuffix !== undefined) {
    const s = options.initSuffix;
    if (!Array.isArray(s) || s.length === 0) throw new Error('gcg: `initSuffix` must be a non-empty list of token ids');
    s.forEach((id, i) => {
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new Error(`gcg: \`initSuffix\`[${i}] is ${id}, not a token id in [0, ${V})`);
    });
    if (options.suffixLength !== undefined && options.suffixLength !== s.length) {
      throw new Error(`gcg: \`suffixLength\` is ${options.suffixLength} but \`initSuffix\` has ${s.length} tokens (give one, or make them agree)`);
    }
    return s.slice();
  }
  const length = options.suffixLength ?? 20;
  const init = options.initToken ?? '!';
  let id: number;
  if (typeof init === 'number') {
    if (!Number.isInteger(init) || init < 0 || init >= V) throw new Error(`gcg: \`initToken\` ${init} is not a token id in [0, ${V})`);
    id = init;
  } else if (typeof init === 'string' && init !== '') {
    let ids: number[];
    try {
      ids = target.responseIds(init);
    } catch (e) {
      throw new Error(`gcg: \`initToken\` ${JSON.stringify(init)} cannot be encoded by target "${target.name}" (${(e as Error).message}); pass another initToken or initSuffix`);
    }
    if (ids.length !== 1) throw new Error(`gcg: \`initToken\` ${JSON.stringify(init)} encodes to ${ids.length} tokens [${ids}], not one; pass another initToken (or its id) or initSuffix`);
    id = ids[0];
  } else {
    throw new Error(`gcg: \`initToken\` must be a token id or non-empty text, but is ${JSON.stringify(init)}`);
  }
  if (!allowed[id]) throw new Error(`gcg: \`initToken\` ${JSON.stringify(init)} (id ${id}) is a disallowed token; choose an allowed one`);
  return new Array<number>(length).fill(id);
}

/** llm-attacks' sample_control: one random top-k token at one position per candidate, positions spread evenly. */
function sampleCandidates(current: readonly number[], top: readonly (readonly number[])[], batchSize: number, rng: Rng): number[][] {
  const L = current.length;
  const offset = batchSize < L ? rng.int(L) : 0;
  const out: number[][] = [];
  for (let i = 0; i < batchSize; i++) {
    const pos = (Math.floor((i * L) / batchSize) + offset) % L;
    const row = top[pos];
    const cand = current.slice();
    cand[pos] = row[rng.int(row.length)];
    out.push(cand);
  }
  return out;
}

const sameIds = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/** Multi-prompt GCG: one suffix for all behaviours, minimising the mean target loss. See the file comment. */
export async function gcg(target: Target, behaviours: readonly HarmfulBehaviour[], options: GcgOptions): Promise<GcgResult> {
  if (!target || typeof target.promptIds !== 'function' || !target.model) throw new Error('gcg: `target` must be a Target (model + promptIds/responseIds/decode)');
  if (!Array.isArray(behaviours) || behaviours.length === 0) throw new Error('gcg: `behaviours` is empty (expected at least one harmful behaviour)');
  if (!options || typeof options !== 'object') throw new Error('gcg: `options` with `targetText` are required');
  if (options.targetText === undefined) throw new Error('gcg: `targetText` is required (the response to force, e.g. "Sure, here is")');
  checkInt(options.steps, 'steps', 0);
  checkInt(options.suffixLength, 'suffixLength', 1);
  checkInt(options.topK, 'topK', 1);
  checkInt(options.batchSize, 'batchSize', 1);
  checkInt(options.evalBatchSize, 'evalBatchSize', 1);
  checkInt(options.gradBatchSize, 'gradBatchSize', 1);
  const seed = options.seed === undefined ? 0 : checkSeed(options.seed, 'gcg: seed');
  if (options.onStep !== undefined && typeof options.onStep !== 'function') throw new Error('gcg: `onStep` must be a function');
  const steps = options.steps ?? 50;
  const batchSize = options.batchSize ?? 64;
  const evalBatchSize = options.evalBatchSize ?? batchSize;
  const model = target.model;

  const prompts = gcgPrompts(target, behaviours, options.targetText, 'gcg');
  const allowed = allowedMask(target, options);
  const nAllowed = allowed.reduce((a, x) => a + x, 0);
  const topK = Math.min(options.topK ?? 256, nAllowed);
  let suffix = initialSuffix(target, options, allowed);
  const initSuffixIds = suffix.slice();
  const rng = new Rng(`gcg:${seed}`);
  const penalty = Float32Array.from(allowed, (a) => (a ? 0 : -Infinity));
  const retokenizes = (ids: number[]) => {
    try {
      return sameIds(target.responseIds(target.decode(ids)), ids);
    } catch {
      return false;
    }
  };

  const bar = options.progress === false ? null : progress(steps, { label: 'gcg', unit: 'steps', ...(options.progress ?? {}) });
  const initialLoss = (await gcgCandidateLosses(model, prompts, [suffix], { batchSize: evalBatchSize }))[0];
  let current = initialLoss;
  let best = { ids: suffix.slice(), loss: current, step: 0 };
  const losses: number[] = [];
  let ran = 0;
  const penaltyT = tf.tensor1d(penalty);
  try {
    for (let step = 1; step <= steps; step++) {
      const { grad } = await gcgTokenGradients(model, prompts, suffix, { batchSize: options.gradBatchSize });
      let topT: tf.Tensor;
      try {
        topT = tf.tidy(() => tf.topk(tf.add(tf.neg(grad), penaltyT), topK).indices);
      } finally {
        grad.dispose();
      }
      const top = (await topT.array()) as number[][];
      topT.dispose();
      const seen = new Set<string>();
      const candidates = sampleCandidates(suffix, top, batchSize, rng).filter((c) => {
        const key = c.join(',');
        if (seen.has(key) || sameIds(c, suffix)) return false;
        seen.add(key);
        return !options.retokenize || retokenizes(c);
      });
      if (candidates.length > 0) {
        const candLosses = await gcgCandidateLosses(model, prompts, candidates, { batchSize: evalBatchSize });
        let arg = 0;
        for (let i = 1; i < candLosses.length; i++) if (candLosses[i] < candLosses[arg]) arg = i;
        suffix = candidates[arg];
        current = candLosses[arg];
        if (current < best.loss) best = { ids: suffix.slice(), loss: current, step };
      }
      losses.push(current);
      ran = step;
      bar?.tick(1, { loss: current, best: best.loss, cands: candidates.length });
      if (options.onStep && (await options.onStep({ step, loss: current, bestLoss: best.loss, suffixIds: suffix.slice(), candidates: candidates.length })) === true) break;
    }
  } finally {
    penaltyT.dispose();
  }
  bar?.done({ best: best.loss });
  const behaviourLosses: { id: string; loss: number }[] = [];
  for (const p of prompts) behaviourLosses.push({ id: p.id, loss: (await gcgCandidateLosses(model, [p], [best.ids]))[0] });
  return {
    suffixIds: best.ids, suffixText: target.decode(best.ids), bestLoss: best.loss, bestStep: best.step, initSuffixIds, initialLoss,
    finalSuffixIds: suffix.slice(), finalLoss: current, losses, steps: ran, behaviourLosses,
  };
}
