// Training sets handed off to PyTorch trainers. Training a 7B model belongs on the PyTorch stack;
// the kit builds the data (tokenised with a Target, reference log-probs from its model, sampled
// prefill spans) and writes JSONL in the layouts the papers' reference trainers read, with our
// extra fields beside theirs. Every writer is atomic (lib/io/atomic.ts): a reader sees the old file
// or the whole new one. The JSONL writers put one JSON object per line, with these fields:
//
// Augmentation triplets (writeAugmentationTriplets; read back by loadDataset as 'qi-augmentation'):
//   instruction, harmful, refusal   Qi et al.'s llama2_safety_data_direct.jsonl fields (also what
//                                   Vega & Singh's deep_safety_alignment.py reads), which their
//                                   trainers tokenise and sample (coin, k) from themselves
//   id, category?                   ours: the source behaviour's id and category
//   prompt_ids, harmful_ids,        ours, with a target: the triplet as the target's ids
//   refusal_ids                     (augmentationTripletsFor: the generation prompt; the harmful
//                                   answer without end token; the refusal + end-of-response token)
//
// Constrained-SFT examples (writeConstrainedSFTExamples), Qi et al.'s token-wise constrained
// fine-tuning (lib/objectives/constrainedSFT.ts):
//   messages                        their fine-tuning format ([system?], user, assistant), as in
//                                   pure_bad100.jsonl. Their Llama-2 formatter inserts Meta's default
//                                   system prompt when messages have none, so a trainer that
//                                   re-tokenises `messages` must render them as the target did
//   input_ids                       prompt (target.promptIds) + response + end-of-response token
//   loss_mask                       1 where token t is a target (predicted from position t - 1): the
//                                   response and its end token; 0 on the prompt
//   labels                          input_ids with -100 where loss_mask is 0 (transformers' labels;
//                                   the model shifts them)
//   ref_logprobs                    ours: log p_ref(input_ids[t] | input_ids[<t]) under the target's
//                                   model (referenceLogProbs), one per token, entry 0 = 0; the
//                                   objective reads the entries where loss_mask = 1
//   reference_logps_full            the column their ConstrainedSFTTrainer precomputes before training
//                                   (get_batch_logps): length T - 1, entry s = log p_ref of token s + 1
//                                   where it is a target, 1000 elsewhere (not padded to max_seq_length;
//                                   their soft_sft_loss keeps the entries <= 0)
//
// PRESTO / safety-recovery examples (writePrestoExamples): the kit's sampled augmentation pool
// (the examples augmentationSources trains on with prefill spans, same seed, same examples):
//   instruction, harmful, refusal   the source triplet, in the fields above
//   id                              the source behaviour's id
//   messages                        [system?], user, assistant = the decoded response (h[:k] + r)
//   input_ids, loss_mask, labels    prompt x + h[:k] + r (+ end token); loss on r only
//   prefill                         {start, length}: h[:k] is input_ids[start : start + length]
//                                   (start = |x|, length = k; 0 = a plain refusal), the kit's
//                                   extras.prefill; in Vega & Singh's trainer on an unpadded row,
//                                   start = first_prefill and start + length = first_refusal
//   prefill_text                    the decoded prefill h[:k]
//
// Fine-tuning chat JSONL (writeChatJsonl; read back by loadDataset as 'chat-jsonl'):
//   messages                        [system?], user, assistant, as in Qi et al.'s pure_bad100.jsonl
//
// Utility anchor (writeAlpacaJson; read back by loadDataset as 'alpaca'): one JSON array, not JSONL,
// of {instruction, input: "", output}, the layout of Qi et al.'s llama2_alpaca_anchor.json and Vega &
// Singh's utility data (both trainers mix it with the safety examples), e.g. the kit's distilled
// anchor (distilledAnchor's answers)

import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { checkBehaviours, harmfulResponseOf, type HarmfulBehaviour } from '../metrics/behaviours.js';
import { trainingExample, type Target } from '../metrics/target.js';
import { referenceLogProbs } from '../objectives/constrainedSFT.js';
import { sampleAugmentationExamples, type AugmentationSampleOptions } from '../objectives/augmentation.js';
import type { PrefillSpan } from '../objectives/prefillSpans.js';
import { augmentationTripletsFor } from '../train/augment.js';
import type { ChatMessage } from '../tokenizer/index.js';

/** transformers' ignore index in `labels`. */
export const IGNORE_LABEL = -100;

/** Qi et al.'s filler for non-target entries of reference_logps_full (their get_batch_logps). */
export const REFERENCE_LOGPS_FILLER = 1000;

export interface RequestResponsePair {
  request: string;
  response: string;
}

export interface TripletRecord {
  instruction: string;
  harmful: string;
  refusal: string;
  id: string;
  category?: string;
  prompt_ids?: number[];
  harmful_ids?: number[];
  refusal_ids?: number[];
}

export interface ConstrainedSFTRecord {
  messages: ChatMessage[];
  input_ids: number[];
  loss_mask: number[];
  labels: number[];
  ref_logprobs: number[];
  reference_logps_full: number[];
}

export interface PrestoRecord {
  instruction: string;
  harmful: string;
  refusal: string;
  id: string;
  messages: ChatMessage[];
  input_ids: number[];
  loss_mask: number[];
  labels: number[];
  prefill: PrefillSpan;
  prefill_text: string;
}

export interface ChatJsonlRecord {
  messages: ChatMessage[];
}

export interface AlpacaRecord {
  instruction: string;
  input: string;
  output: string;
}

export interface MessagesOptions {
  /** A system message to put first in `messages` (the target's own system prompt, if it has one; never added to the ids). */
  systemPrompt?: string;
}

export interface ConstrainedSFTExportOptions extends MessagesOptions {
  /** Rows per forward pass of the reference model. Default 16. */
  batchSize?: number;
}

export type PrestoExportOptions = AugmentationSampleOptions & MessagesOptions;

// ---------------------------------------------------------------------------------------------

/** Write records as JSONL (one JSON object per line), atomically, creating the folder if needed. */
export function writeJsonl(file: string, records: readonly unknown[]): void {
  if (!Array.isArray(records)) throw new Error(`writeJsonl(${file}): \`records\` must be an array`);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileAtomic(file, records.map((r, i) => {
    const line = JSON.stringify(r);
    if (line === undefined || line[0] !== '{') throw new Error(`writeJsonl(${file}): record ${i} is not a JSON object`);
    return line;
  }).join('\n') + (records.length > 0 ? '\n' : ''));
}

function chatMessages(request: string, response: string, options: MessagesOptions): ChatMessage[] {
  return [
    ...(options.systemPrompt !== undefined ? [{ role: 'system', content: options.systemPrompt }] : []),
    { role: 'user', content: request },
    { role: 'assistant', content: response },
  ];
}

function checkPairs(pairs: readonly RequestResponsePair[], where: string): void {
  if (!Array.isArray(pairs) || pairs.length === 0) throw new Error(`${where}: \`pairs\` is empty (expected at least one {request, response})`);
  pairs.forEach((p, i) => {
    if (typeof p?.request !== 'string' || p.request.trim() === '') throw new Error(`${where}: pairs[${i}].request must be a non-empty string, but is ${JSON.stringify(p?.request)}`);
    if (typeof p.response !== 'string') throw new Error(`${where}: pairs[${i}].response must be a string, but is ${JSON.stringify(p.response)}`);
  });
}

function labelsOf(ids: readonly number[], lossMask: readonly number[]): number[] {
  return ids.map((id, t) => (lossMask[t] ? id : IGNORE_LABEL));
}

function refusalOf(b: HarmfulBehaviour, where: string): string {
  if (typeof b.refusal !== 'string' || b.refusal.trim() === '') throw new Error(`${where}: behaviour "${b.id}" has no \`refusal\` (triplets need (request, harmful answer, refusal))`);
  return b.refusal;
}

// ---------------------------------------------------------------------------------------------

/** Safety triplets as records: Qi et al.'s fields, plus the target's ids when a target is given. */
export function tripletRecords(behaviours: readonly HarmfulBehaviour[], options: { target?: Target } = {}): TripletRecord[] {
  const where = 'tripletRecords';
  checkBehaviours(behaviours, where);
  const records = behaviours.map((b): TripletRecord => ({
    instruction: b.request, harmful: harmfulResponseOf(b, where), refusal: refusalOf(b, where), id: b.id,
    ...(b.category !== undefined ? { category: b.category } : {}),
  }));
  if (options.target) {
    augmentationTripletsFor(options.target, behaviours).forEach((t, i) => {
      Object.assign(records[i], { prompt_ids: [...t.prompt], harmful_ids: [...t.harmful], refusal_ids: [...t.refusal] });
    });
  }
  return records;
}

/** Write safety triplets (x, h, r) as JSONL that Qi et al.'s and Vega & Singh's trainers, and loadDataset, read. */
export function writeAugmentationTriplets(file: string, behaviours: readonly HarmfulBehaviour[], options: { target?: Target } = {}): TripletRecord[] {
  const records = tripletRecords(behaviours, options);
  writeJsonl(file, records);
  return records;
}

/**
 * Constrained-SFT examples for (request, response) pairs: the target's tokenisation, the loss mask
 * and its model's per-token reference log-probs (the model before fine-tuning).
 */
export function constrainedSFTRecords(target: Target, pairs: readonly RequestResponsePair[], options: ConstrainedSFTExportOptions = {}): ConstrainedSFTRecord[] {
  const where = 'constrainedSFTRecords';
  checkPairs(pairs, where);
  const examples = pairs.map((p) => trainingExample(target, p.request, p.response));
  const ref = referenceLogProbs(target.model, examples, { batchSize: options.batchSize, padId: target.padTokenId });
  return examples.map((e, i) => {
    ref[i].forEach((x, t) => {
      if (!Number.isFinite(x)) throw new Error(`${where}: the reference log-prob of token ${t} of pair ${i} is ${x} (expected a finite number; JSON cannot hold it)`);
    });
    const full = ref[i].slice(1).map((x, s) => (e.lossMask[s + 1] ? x : REFERENCE_LOGPS_FILLER));
    return {
      messages: chatMessages(pairs[i].request, pairs[i].response, options),
      input_ids: e.ids, loss_mask: e.lossMask, labels: labelsOf(e.ids, e.lossMask), ref_logprobs: ref[i], reference_logps_full: full,
    };
  });
}

/** Write constrained-SFT examples (see constrainedSFTRecords) as JSONL. */
export function writeConstrainedSFTExamples(file: string, target: Target, pairs: readonly RequestResponsePair[], options: ConstrainedSFTExportOptions = {}): ConstrainedSFTRecord[] {
  const records = constrainedSFTRecords(target, pairs, options);
  writeJsonl(file, records);
  return records;
}

/**
 * Safety-recovery examples x + h[:k] + r with their prefill spans, sampled as the kit's
 * augmentation pool is (sampleAugmentationExamples over augmentationTripletsFor, same options,
 * same examples), for PRESTO and push-forward trainers.
 */
export function prestoRecords(target: Target, behaviours: readonly HarmfulBehaviour[], options: PrestoExportOptions): PrestoRecord[] {
  const where = 'prestoRecords';
  const { systemPrompt, ...sampling } = options;
  const triplets = augmentationTripletsFor(target, behaviours);
  return sampleAugmentationExamples(triplets, sampling).map((e) => {
    const b = behaviours[e.triplet];
    const start = triplets[e.triplet].prompt.length;
    return {
      instruction: b.request, harmful: harmfulResponseOf(b, where), refusal: refusalOf(b, where), id: b.id,
      messages: chatMessages(b.request, target.decode(e.ids.slice(start)), { systemPrompt }),
      input_ids: e.ids, loss_mask: e.lossMask, labels: labelsOf(e.ids, e.lossMask),
      prefill: { start, length: e.k }, prefill_text: target.decode(e.ids.slice(start, start + e.k)),
    };
  });
}

/** Write PRESTO / safety-recovery examples (see prestoRecords) as JSONL. */
export function writePrestoExamples(file: string, target: Target, behaviours: readonly HarmfulBehaviour[], options: PrestoExportOptions): PrestoRecord[] {
  const records = prestoRecords(target, behaviours, options);
  writeJsonl(file, records);
  return records;
}

/** Chat fine-tuning records {messages} for (request, response) pairs. */
export function chatJsonlRecords(pairs: readonly RequestResponsePair[], options: MessagesOptions = {}): ChatJsonlRecord[] {
  checkPairs(pairs, 'chatJsonlRecords');
  return pairs.map((p) => ({ messages: chatMessages(p.request, p.response, options) }));
}

/** Write chat fine-tuning JSONL ({"messages": [...]} per line) for (request, response) pairs. */
export function writeChatJsonl(file: string, pairs: readonly RequestResponsePair[], options: MessagesOptions = {}): ChatJsonlRecord[] {
  const records = chatJsonlRecords(pairs, options);
  writeJsonl(file, records);
  return records;
}

/** Alpaca-style anchor records {instruction, input: '', output} for (request, response) pairs. */
export function alpacaRecords(pairs: readonly RequestResponsePair[]): AlpacaRecord[] {
  checkPairs(pairs, 'alpacaRecords');
  return pairs.map((p) => ({ instruction: p.request, input: '', output: p.response }));
}

/** Write (request, response) pairs as an Alpaca-style JSON array (the utility anchor layout the reference trainers read), atomically. */
export function writeAlpacaJson(file: string, pairs: readonly RequestResponsePair[]): AlpacaRecord[] {
  const records = alpacaRecords(pairs);
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  writeFileAtomic(file, `${JSON.stringify(records, null, 4)}\n`);
  return records;
}
