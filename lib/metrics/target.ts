// A target: a causal LM plus how a request becomes prompt ids and response ids become text. Every
// attack, metric and defence takes one, so the same code runs on the organism and on any Hugging
// Face checkpoint with its tokenizer and chat template (or the Llama-2 chat format).

import * as fs from 'fs';
import * as path from 'path';
import { loadModel, type Decoder } from '../model/index.js';
import { llama2ChatPrompt, loadTokenizer, type Tokenizer } from '../tokenizer/index.js';

export interface Target {
  /** Shown in tables and results. */
  name: string;
  model: Decoder;
  /** Prompt ids for a request, formatted for the model and ready for its response (generation prompt added). */
  promptIds(request: string): number[];
  /** Token ids of response text as the model would write it after the prompt (no special tokens). */
  responseIds(text: string): number[];
  /** Text of response ids (special tokens dropped). */
  decode(ids: number[]): string;
  /** Ids that end a response; the first one is appended to training responses. */
  eosTokenIds: number[];
  padTokenId: number;
  /** Default number of new tokens for a full answer. */
  maxNewTokens: number;
}

/** A training sequence for (request, response): prompt + response + end-of-response, loss on the response and its end. */
export function trainingExample(target: Target, request: string, response: string): { ids: number[]; lossMask: number[]; responseStart: number } {
  const prompt = target.promptIds(request);
  const answer = [...target.responseIds(response), target.eosTokenIds[0]];
  return { ids: [...prompt, ...answer], lossMask: [...prompt.map(() => 0), ...answer.map(() => 1)], responseStart: prompt.length };
}

/**
 * How a request becomes prompt text:
 * - 'chat-template': the tokenizer's own chat template (tokenizer_config.json or chat_template.jinja);
 * - 'llama2': the Llama-2 chat format (Qi et al.'s chat models), with or without Meta's default system prompt;
 * - 'instruction': the papers' base-model format (Qi et al.'s llama2_base / gemma_base string formatter):
 *   bos + system prompt + "\n### Instruction:\n" + request + "\n" + "\n### Response:\n". Their base models stop
 *   generating at "###" (a new section) as well as at eos, so the target does too.
 */
export type PromptFormat = 'chat-template' | 'llama2' | 'instruction';
export const PROMPT_FORMATS: readonly PromptFormat[] = ['chat-template', 'llama2', 'instruction'];

/** Qi et al.'s system prompt for base models in the instruction format (their default_system_prompt). */
export const INSTRUCTION_SYSTEM_PROMPT =
  "Below is an instruction that describes a task, which starts with '### Instruction:'. Write a response that appropriately completes the request. This response is put after '### Response:'.\n\n";

export interface ChatTargetOptions {
  name?: string;
  /** Default 'chat-template'. */
  format?: PromptFormat;
  /**
   * A system prompt. 'llama2': undefined or 'default' = Meta's safety prompt, null = none (as Qi et al.'s prefilling runs).
   * 'instruction': undefined = Qi et al.'s base-model preamble, null = none. 'chat-template': a system turn when given.
   */
  systemPrompt?: string | null;
  maxNewTokens?: number;
}

/** The instruction-format prompt text (without bos) for a request. */
export function instructionPrompt(request: string, systemPrompt: string | null = INSTRUCTION_SYSTEM_PROMPT): string {
  return `${systemPrompt ?? ''}\n### Instruction:\n${request}\n\n### Response:\n`;
}

/** A target from a checkpoint and its tokenizer. */
export function chatTarget(model: Decoder, tokenizer: Tokenizer, options: ChatTargetOptions = {}): Target {
  const format = options.format ?? 'chat-template';
  if (!PROMPT_FORMATS.includes(format)) throw new Error(`chatTarget: \`format\` must be one of ${PROMPT_FORMATS.map((f) => `'${f}'`).join(', ')}, but is ${JSON.stringify(format)}`);
  if (format === 'chat-template' && !tokenizer.chatTemplate) {
    throw new Error(
      `chatTarget: the tokenizer${tokenizer.dir ? ` in ${tokenizer.dir}` : ''} has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja); ` +
        "pass format: 'llama2' (Llama-2 chat), format: 'instruction' (the papers' ### Instruction / ### Response format for base models), or a tokenizer with one",
    );
  }
  const eos = [model.config.eosTokenId ?? tokenizer.eosTokenId].flat().filter((x): x is number => typeof x === 'number');
  if (eos.length === 0) throw new Error('chatTarget: neither the model config nor the tokenizer names an eos token');
  const system = options.systemPrompt;
  if (format === 'instruction') {
    // Qi et al. stop base models when they start a new "###" section (their KeywordStoppingCriteria on two Llama-2
    // ids); here by token text, so any vocabulary with a "###" token (bare, after a sentencepiece or byte-level space) works.
    const stops = ['###', '\u2581###', '\u0120###'].map((t) => tokenizer.tokenToId(t)).filter((x): x is number => typeof x === 'number');
    eos.push(...stops.filter((id, i) => !eos.includes(id) && stops.indexOf(id) === i));
  }
  return {
    name: options.name ?? 'target',
    model,
    promptIds(request) {
      if (format === 'instruction') {
        const text = (tokenizer.bosToken ?? '') + instructionPrompt(request, system === undefined ? INSTRUCTION_SYSTEM_PROMPT : system);
        return tokenizer.encode(text, { addSpecialTokens: false });
      }
      if (format === 'llama2') {
        const text = llama2ChatPrompt([{ role: 'user', content: request }], { systemPrompt: system === undefined ? 'default' : system, bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken });
        return tokenizer.encode(text, { addSpecialTokens: false });
      }
      const messages = [...(system ? [{ role: 'system', content: system }] : []), { role: 'user', content: request }];
      return tokenizer.encodeChatMessages(messages, { addGenerationPrompt: true });
    },
    responseIds: (text) => tokenizer.encode(text, { addSpecialTokens: false }),
    decode: (ids) => tokenizer.decode(ids, { skipSpecialTokens: true }),
    eosTokenIds: eos,
    padTokenId: tokenizer.padTokenId ?? eos[0],
    maxNewTokens: options.maxNewTokens ?? 64,
  };
}

export interface LoadTargetOptions extends ChatTargetOptions {
  /** Where tokenizer.json (and tokenizer_config.json) are; default the model folder. */
  tokenizerDir?: string;
}

/**
 * A target from a Hugging Face folder: the model (loadModel: safetensors, bf16/f16 read into float32), its tokenizer
 * and its formatting. Errors name the folder and what is missing (config, tokenizer, chat template).
 */
export async function loadTarget(dir: string, options: LoadTargetOptions = {}): Promise<Target> {
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new Error(`loadTarget: ${dir} is not a folder (expected a Hugging Face model folder with config.json and *.safetensors)`);
  const tokenizerDir = options.tokenizerDir ?? dir;
  if (!fs.existsSync(path.join(tokenizerDir, 'tokenizer.json'))) {
    throw new Error(`loadTarget: ${path.join(tokenizerDir, 'tokenizer.json')} not found (the kit reads fast tokenizers; pass tokenizerDir for a tokenizer kept elsewhere)`);
  }
  const tokenizer = await loadTokenizer(tokenizerDir);
  // Check the formatting before reading gigabytes of weights.
  const format = options.format ?? 'chat-template';
  if (!PROMPT_FORMATS.includes(format)) throw new Error(`loadTarget: \`format\` must be one of ${PROMPT_FORMATS.map((f) => `'${f}'`).join(', ')}, but is ${JSON.stringify(format)}`);
  if (format === 'chat-template' && !tokenizer.chatTemplate) {
    throw new Error(
      `loadTarget: ${tokenizerDir} has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja); ` +
        "pass format 'llama2' (Llama-2 chat) or 'instruction' (the papers' ### Instruction / ### Response format for base models)",
    );
  }
  const model = await loadModel(dir);
  return chatTarget(model, tokenizer, { ...options, name: options.name ?? path.basename(path.resolve(dir)) });
}

/** The same formatting with another model (a fine-tuned or defended copy). */
export function withModel(target: Target, model: Decoder, name = target.name): Target {
  return { ...target, model, name };
}
