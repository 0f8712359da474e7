// A target: a causal LM plus how a request becomes prompt ids and response ids become text. Every
// attack, metric and defence takes one, so the same code runs on the organism and on any Hugging
// Face checkpoint with its tokenizer and chat template (or the Llama-2 chat format).

import type { Decoder } from '../model/index.js';
import { llama2ChatPrompt, type Tokenizer } from '../tokenizer/index.js';

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

export interface ChatTargetOptions {
  name?: string;
  /** 'chat-template': the tokenizer's own template; 'llama2': the Llama-2 chat format (Qi et al.'s). Default 'chat-template'. */
  format?: 'chat-template' | 'llama2';
  /** A system prompt ('llama2': 'default' = Meta's safety prompt, null = none, as Qi et al.'s prefilling runs). */
  systemPrompt?: string | null;
  maxNewTokens?: number;
}

/** A target from a checkpoint and its tokenizer. */
export function chatTarget(model: Decoder, tokenizer: Tokenizer, options: ChatTargetOptions = {}): Target {
  const format = options.format ?? 'chat-template';
  if (format !== 'chat-template' && format !== 'llama2') throw new Error(`chatTarget: \`format\` must be 'chat-template' or 'llama2', but is ${JSON.stringify(format)}`);
  if (format === 'chat-template' && !tokenizer.chatTemplate) {
    throw new Error(`chatTarget: the tokenizer${tokenizer.dir ? ` in ${tokenizer.dir}` : ''} has no chat template; pass format: 'llama2' or a tokenizer with one`);
  }
  const eos = [model.config.eosTokenId ?? tokenizer.eosTokenId].flat().filter((x): x is number => typeof x === 'number');
  if (eos.length === 0) throw new Error('chatTarget: neither the model config nor the tokenizer names an eos token');
  const system = options.systemPrompt;
  return {
    name: options.name ?? 'target',
    model,
    promptIds(request) {
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

/** The same formatting with another model (a fine-tuned or defended copy). */
export function withModel(target: Target, model: Decoder, name = target.name): Target {
  return { ...target, model, name };
}
