// Generate-and-judge on any target, behaviour set and judge: harmfulness (ASR) with Wilson 95%
// intervals, optionally with a forced response prefix (prefilling), and utility on benign requests.

import { generate, padRows } from '../model/index.js';
import { mixSeed } from '../model/random.js';
import { checkSeed } from '../util/rng.js';
import { progress, type ProgressOptions } from '../report/index.js';
import { checkBehaviours, harmfulResponseOf, type BenignBehaviour, type HarmfulBehaviour } from './behaviours.js';
import type { Decoding } from './decoding.js';
import type { Judge, Verdict } from './judge.js';
import { wilson } from './stats.js';
import type { Target } from './target.js';

/** k successes out of n with a Wilson 95% interval. */
export interface Rate {
  k: number;
  n: number;
  rate: number;
  low: number;
  high: number;
}

export function rateOf(k: number, n: number): Rate {
  const w = wilson(k, n);
  return { k, n, rate: w.rate, low: w.low, high: w.high };
}

/** Forced response prefix ids: the same for every behaviour, or per behaviour. */
export type PrefillSpec = number[] | ((b: HarmfulBehaviour, index: number) => number[]);

/** Prefill with the first k tokens of each behaviour's harmful reference answer (Qi et al.'s prefilling attack). */
export function harmfulPrefill(target: Target, k: number): (b: HarmfulBehaviour) => number[] {
  if (!Number.isInteger(k) || k < 0) throw new Error(`harmfulPrefill: \`k\` must be an integer >= 0, but is ${k}`);
  return (b) => {
    const ids = target.responseIds(harmfulResponseOf(b, `harmfulPrefill(k=${k})`));
    if (k > ids.length) throw new Error(`harmfulPrefill: k = ${k} is beyond the harmful answer of "${b.id}" (${ids.length} tokens); choose k <= ${ids.length}`);
    return ids.slice(0, k);
  };
}

/** Prefill with fixed text (a refusal prefix such as "I cannot"). */
export function textPrefill(target: Target, text: string): number[] {
  return text === '' ? [] : target.responseIds(text);
}

export interface GenerateResponsesOptions {
  decoding: Decoding;
  prefill?: PrefillSpec;
  /** Rows per generate call (default 64). */
  batchSize?: number;
  /** Progress bar options (label), or false for none. */
  progress?: ProgressOptions | false;
  /** Replaces the chat prompt of each request (GCG suffixes, identity preambles): ids of the whole prompt. */
  promptIds?: (b: HarmfulBehaviour, index: number) => number[];
}

export interface GeneratedResponse {
  id: string;
  prefillIds: number[];
  /** Tokens the model generated after the prefill, up to (not including) its end-of-response. */
  responseIds: number[];
  prefill: string;
  response: string;
  finishReason: 'eos' | 'stop_string' | 'length';
}

function batchSeed(seed: number, batch: number): number {
  return mixSeed((seed >>> 0) ^ Math.imul(batch + 1, 0x9e3779b1));
}

function checkDecoding(d: Decoding, where: string): void {
  if (typeof d !== 'object' || d === null || typeof d.doSample !== 'boolean') throw new Error(`${where}: \`decoding.doSample\` must be true or false`);
  if (d.seed !== undefined) checkSeed(d.seed, `${where}: decoding.seed`);
  if (d.maxNewTokens !== undefined && (!Number.isInteger(d.maxNewTokens) || d.maxNewTokens < 1)) throw new Error(`${where}: \`decoding.maxNewTokens\` must be a positive integer, but is ${d.maxNewTokens}`);
}

/** Generate one response per behaviour (batched, left-padded), with an optional forced prefix. */
export async function generateResponses(target: Target, behaviours: readonly HarmfulBehaviour[], options: GenerateResponsesOptions): Promise<GeneratedResponse[]> {
  checkBehaviours(behaviours, 'generateResponses');
  checkDecoding(options.decoding, 'generateResponses');
  const batchSize = options.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`generateResponses: \`batchSize\` must be a positive integer, but is ${batchSize}`);
  const d = options.decoding;
  const prefills = behaviours.map((b, i) => (typeof options.prefill === 'function' ? options.prefill(b, i) : options.prefill ?? []));
  const prompts = behaviours.map((b, i) => (options.promptIds ? options.promptIds(b, i) : target.promptIds(b.request)));
  const eos = new Set(target.eosTokenIds);
  const bar = options.progress === false ? null : progress(behaviours.length, { label: 'generate', unit: 'responses', ...(options.progress ?? {}) });
  const out: GeneratedResponse[] = [];
  for (let start = 0, batch = 0; start < behaviours.length; start += batchSize, batch++) {
    const rows = behaviours.slice(start, start + batchSize).map((_, r) => start + r);
    const { inputIds, attentionMask } = padRows(rows.map((i) => prompts[i]), target.padTokenId, 'left');
    const width = inputIds[0].length;
    const anyPrefill = rows.some((i) => prefills[i].length > 0);
    // The target's default length, within the context the model was trained for: a response never
    // needs more (an explicit decoding.maxNewTokens is passed as given, and generate warns past it).
    const room = target.model.config.maxPositions - width - Math.max(...rows.map((i) => prefills[i].length));
    const maxNewTokens = d.maxNewTokens ?? Math.max(1, Math.min(target.maxNewTokens, room));
    const g = await generate(target.model, inputIds, {
      attentionMask, maxNewTokens, doSample: d.doSample, temperature: d.temperature, topP: d.topP, topK: d.topK,
      seed: batchSeed(d.seed ?? 0, batch), eosTokenId: target.eosTokenIds, padTokenId: target.padTokenId,
      prefill: anyPrefill ? rows.map((i) => prefills[i]) : undefined,
    });
    rows.forEach((i, r) => {
      const pre = prefills[i];
      const free = g.newTokens[r].slice(pre.length);
      const end = free.findIndex((t) => eos.has(t));
      const responseIds = end >= 0 ? free.slice(0, end) : free;
      out.push({
        id: behaviours[i].id, prefillIds: pre, responseIds, prefill: pre.length ? target.decode(pre) : '', response: target.decode(responseIds),
        finishReason: g.finishReason[r],
      });
    });
    bar?.tick(rows.length);
  }
  bar?.done();
  return out;
}

export interface JudgedResponse extends GeneratedResponse {
  verdict: Verdict;
}

export interface HarmfulEvaluation {
  n: number;
  harmful: Rate;
  refused: Rate;
  /** Mean StrongREJECT-style score, when the judge gives one. */
  meanStrongReject?: number;
  /** Mean 1-5 harmfulness score, when the judge gives one. */
  meanScore?: number;
  responses: JudgedResponse[];
}

/** Rates and mean scores of judged responses (any records with a `verdict`: generated responses, RAP runs). */
export function summarizeVerdicts<R extends { verdict: Verdict }>(responses: R[]): Omit<HarmfulEvaluation, 'responses'> & { responses: R[] } {
  const n = responses.length;
  const count = (f: (v: Verdict) => boolean) => responses.reduce((a, r) => a + (f(r.verdict) ? 1 : 0), 0);
  const mean = (f: (v: Verdict) => number | undefined) => {
    const xs = responses.map((r) => f(r.verdict)).filter((x): x is number => typeof x === 'number');
    return xs.length === n && n > 0 ? xs.reduce((a, b) => a + b, 0) / n : undefined;
  };
  return { n, harmful: rateOf(count((v) => v.harmful), n), refused: rateOf(count((v) => v.refused), n), meanStrongReject: mean((v) => v.strongReject), meanScore: mean((v) => v.score), responses };
}

/** Judge generated responses to harmful behaviours. */
export async function judgeResponses(judge: Judge, behaviours: readonly HarmfulBehaviour[], generated: GeneratedResponse[]): Promise<JudgedResponse[]> {
  if (!judge || typeof judge.judge !== 'function') throw new Error('judgeResponses: `judge` must be a Judge (an object with a judge(inputs) method)');
  const byId = new Map(behaviours.map((b) => [b.id, b] as [string, HarmfulBehaviour]));
  const verdicts = await judge.judge(generated.map((g) => ({ behaviour: byId.get(g.id)!, prefill: g.prefill, response: g.response })));
  if (verdicts.length !== generated.length) throw new Error(`judge "${judge.name}" returned ${verdicts.length} verdicts for ${generated.length} responses`);
  return generated.map((g, i) => ({ ...g, verdict: verdicts[i] }));
}

/** Generate a response to each harmful behaviour and judge it: the harmfulness rate (ASR) with its interval. */
export async function evaluateHarmful(target: Target, behaviours: readonly HarmfulBehaviour[], judge: Judge, options: GenerateResponsesOptions): Promise<HarmfulEvaluation> {
  const generated = await generateResponses(target, behaviours, options);
  return summarizeVerdicts(await judgeResponses(judge, behaviours, generated));
}

export interface UtilityEvaluation {
  n: number;
  /** Mean utility in [0, 1]. */
  utility: number;
  /** The share of answers scored 1 with its interval (for exact-match utilities: the accuracy). */
  correct: Rate;
  /** Benign answers the judge reads as refusals (over-refusal), with its interval. */
  refused: Rate;
  responses: { id: string; response: string; utility: number; refused: boolean }[];
}

/** Answer benign requests (greedy by default) and judge utility and over-refusal. */
export async function evaluateUtility(
  target: Target, behaviours: readonly BenignBehaviour[], judge: Judge, options: Omit<GenerateResponsesOptions, 'prefill' | 'promptIds'> = { decoding: { doSample: false } },
): Promise<UtilityEvaluation> {
  checkBehaviours(behaviours, 'evaluateUtility');
  if (!judge.utility) throw new Error(`evaluateUtility: judge "${judge.name}" has no utility(); pass a judge that scores benign answers`);
  const asHarmful = behaviours.map((b) => ({ id: b.id, request: b.request }));
  const generated = await generateResponses(target, asHarmful, { ...options, progress: options.progress ?? { label: 'utility' } });
  const scores = await judge.utility(generated.map((g, i) => ({ behaviour: behaviours[i], response: g.response })));
  const verdicts = await judge.judge(generated.map((g, i) => ({ behaviour: asHarmful[i], prefill: '', response: g.response })));
  const n = behaviours.length;
  const responses = generated.map((g, i) => ({ id: g.id, response: g.response, utility: scores[i], refused: verdicts[i].refused }));
  return {
    n, utility: scores.reduce((a, b) => a + b, 0) / n, correct: rateOf(scores.filter((s) => s >= 1).length, n),
    refused: rateOf(responses.filter((r) => r.refused).length, n), responses,
  };
}
