// Tokenizers (tokenizer.json via @huggingface/tokenizers), chat templates (via @huggingface/jinja)
// and the Llama-2-chat prompt format. Pure TypeScript, no tfjs.
export { Tokenizer, loadTokenizer } from './tokenizer.js';
export type { LoadTokenizerOptions, ChatMessage, EncodeOptions, DecodeOptions, ChatTemplateOptions } from './tokenizer.js';
export { llama2ChatPrompt, LLAMA2_DEFAULT_SYSTEM_PROMPT, LLAMA2_CHAT_TEMPLATE } from './llama2.js';
export type { Llama2PromptOptions } from './llama2.js';
