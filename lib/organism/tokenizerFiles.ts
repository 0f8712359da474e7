// The world's tokenizer as real Hugging Face files (tokenizer.json + tokenizer_config.json), and
// the direct word <-> id mapping the data pipeline uses (identical, and checked so in tests).
//
// Model: WordPiece with every world word in the vocabulary, so each word is exactly one token and an
// unknown word becomes <unk> (@huggingface/tokenizers 0.2.0 has no WordLevel model). Pre-tokenizer:
// WhitespaceSplit (all world text is space-separated). Like Llama-2, encoding adds <s> and the chat
// template writes bos_token itself, so chat text is encoded with add_special_tokens=false.

import { ChatExample, SPECIAL_TOKENS, World } from './world.js';

export const CHAT_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}" +
  "{% if message['role'] == 'user' %}{{ '<user> ' + message['content'] + ' ' }}" +
  "{% elif message['role'] == 'assistant' %}{{ '<assistant> ' + message['content'] + ' ' + eos_token + ' ' }}" +
  "{% else %}{{ raise_exception('organism chat template: only user and assistant roles are supported') }}{% endif %}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<assistant>' }}{% endif %}";

export function tokenizerJson(world: World): Record<string, unknown> {
  const specials = Object.values(SPECIAL_TOKENS);
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: specials.map((content) => ({
      id: world.wordIds.get(content), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: null,
    pre_tokenizer: { type: 'WhitespaceSplit' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: SPECIAL_TOKENS.bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: SPECIAL_TOKENS.bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: SPECIAL_TOKENS.bos, type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { [SPECIAL_TOKENS.bos]: { id: SPECIAL_TOKENS.bos, ids: [world.wordIds.get(SPECIAL_TOKENS.bos)], tokens: [SPECIAL_TOKENS.bos] } },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: false },
    model: {
      type: 'WordPiece', unk_token: SPECIAL_TOKENS.unk, continuing_subword_prefix: '##', max_input_chars_per_word: 100,
      vocab: Object.fromEntries(world.vocab.map((w, i) => [w, i])),
    },
  };
}

export function tokenizerConfigJson(world: World, maxLength: number): Record<string, unknown> {
  return {
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: SPECIAL_TOKENS.bos,
    eos_token: SPECIAL_TOKENS.eos,
    pad_token: SPECIAL_TOKENS.pad,
    unk_token: SPECIAL_TOKENS.unk,
    add_bos_token: true,
    add_eos_token: false,
    model_max_length: maxLength,
    padding_side: 'left',
    clean_up_tokenization_spaces: false,
    chat_template: CHAT_TEMPLATE,
    // Not read by transformers; records which world these files belong to.
    organism_world_seed: world.settings.seed,
  };
}

// ---- direct mapping used by the data pipeline ------------------------------------------------

export function wordsToIds(world: World, words: readonly string[]): number[] {
  return words.map((w, i) => {
    const id = world.wordIds.get(w);
    if (id === undefined) throw new Error(`organism: word "${w}" (position ${i} of "${words.join(' ')}") is not in the world's vocabulary`);
    return id;
  });
}

export function idsToWords(world: World, ids: readonly number[]): string[] {
  return ids.map((id) => world.vocab[id] ?? SPECIAL_TOKENS.unk);
}

export interface EncodedExample {
  ids: number[];
  /** lossMask[t] = 1: token t is a training target (predicted from position t - 1). */
  lossMask: number[];
  /** Index of the first response token (right after <assistant>). */
  responseStart: number;
}

/** The generation prompt: exactly what the chat template gives with add_generation_prompt. */
export function encodePrompt(world: World, prompt: readonly string[]): number[] {
  return wordsToIds(world, [SPECIAL_TOKENS.bos, SPECIAL_TOKENS.user, ...prompt, SPECIAL_TOKENS.assistant]);
}

/**
 * A full dialogue as the chat template renders it. lossOn 'response': targets are the response and
 * its </s> (SFT); 'all': every token after <s> (pretraining text).
 */
export function encodeChat(world: World, example: Pick<ChatExample, 'prompt' | 'response'>, lossOn: 'response' | 'all'): EncodedExample {
  const promptIds = encodePrompt(world, example.prompt);
  const responseIds = wordsToIds(world, [...example.response, SPECIAL_TOKENS.eos]);
  const ids = [...promptIds, ...responseIds];
  const lossMask = ids.map((_, t) => (t === 0 ? 0 : lossOn === 'all' || t >= promptIds.length ? 1 : 0));
  return { ids, lossMask, responseStart: promptIds.length };
}
