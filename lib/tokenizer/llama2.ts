// The Llama-2-chat prompt format, with or without Meta's default safety system prompt.
// Qi et al. evaluate Llama-2-7B-Chat with the default system prompt, and run prefilling
// experiments with an empty one; both go through here.

/** Meta's default system prompt (transformers' LlamaTokenizer.DEFAULT_SYSTEM_PROMPT). */
export const LLAMA2_DEFAULT_SYSTEM_PROMPT =
  'You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. ' +
  'Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. ' +
  'Please ensure that your responses are socially unbiased and positive in nature.\n\n' +
  'If a question does not make any sense, or is not factually coherent, explain why instead of answering something not correct. ' +
  "If you don't know the answer to a question, please don't share false information.";

/**
 * The chat_template of meta-llama/Llama-2-7b-chat-hf, with the default system prompt filled in
 * when `use_default_system_prompt` is true (as transformers 4.3x did). Use with
 * tokenizer.applyChatTemplate(messages, {chatTemplate: LLAMA2_CHAT_TEMPLATE, use_default_system_prompt: true}).
 */
export const LLAMA2_CHAT_TEMPLATE =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
  "{% elif use_default_system_prompt == true and not '<<SYS>>' in messages[0]['content'] %}{% set loop_messages = messages %}" +
  `{% set system_message = ${JSON.stringify(LLAMA2_DEFAULT_SYSTEM_PROMPT)} %}` +
  '{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}' +
  "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

export interface Llama2PromptOptions {
  /** 'default' = Meta's safety prompt, a string = that prompt, null = none (default 'default').
   *  A leading system message in `messages` takes precedence. */
  systemPrompt?: 'default' | string | null;
  bosToken?: string;
  eosToken?: string;
}

/**
 * Render a conversation in the Llama-2-chat format:
 *   <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]
 * exactly as the official chat template does (contents are stripped; a conversation ending with a
 * user turn ends with " [/INST]", ready for generation).
 */
export function llama2ChatPrompt(messages: { role: string; content: string }[], opts: Llama2PromptOptions = {}): string {
  const bos = opts.bosToken ?? '<s>';
  const eos = opts.eosToken ?? '</s>';
  let system: string | null = opts.systemPrompt === undefined || opts.systemPrompt === 'default' ? LLAMA2_DEFAULT_SYSTEM_PROMPT : opts.systemPrompt;
  let turns = messages;
  if (messages[0]?.role === 'system') {
    system = messages[0].content;
    turns = messages.slice(1);
  }
  let out = '';
  turns.forEach((m, i) => {
    const expected = i % 2 === 0 ? 'user' : 'assistant';
    if (m.role !== expected) {
      throw new Error(`llama2ChatPrompt: message ${i} has role "${m.role}", expected "${expected}" (roles must alternate user/assistant after an optional system message)`);
    }
    // Python's str.strip() strips whitespace; JS trim() covers the same characters for prompts.
    const content = i === 0 && system !== null ? `<<SYS>>\n${system}\n<</SYS>>\n\n${m.content}` : m.content;
    out += m.role === 'user' ? `${bos}[INST] ${content.trim()} [/INST]` : ` ${content.trim()} ${eos}`;
  });
  return out;
}
