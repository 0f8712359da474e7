import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { loadTokenizer } from '../../lib/tokenizer/index.js';
import { baseCorpus, buildWorld, encodeChat, encodePrompt } from '../../lib/organism/index.js';
import { ALIGN_TRAINING, alignSFT, BASE_TRAINING, loadOrganism, organismConfig, ORGANISM_MODEL, saveOrganism, trainBase } from '../../lib/train/index.js';

const world = buildWorld();

describe('organism training pipeline (tiny settings)', () => {
  // The fastest available backend: a 0.8M-parameter llama trains ~20x slower on the plain cpu backend.
  beforeAll(async () => {
    await initEngine();
  });

  it('trains, saves a Hugging Face folder, and loads it back with the same weights and tokenizer', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-organism-'));
    try {
      const tiny = { ...BASE_TRAINING, steps: 3, warmupSteps: 1, batchSize: 4, corpusSize: 40 };
      const { model, result } = await trainBase(world, tiny);
      expect(result.log.length).toBe(3);
      // Same seed: same corpus, same initial weights, same batches, same losses.
      const again = await trainBase(world, tiny);
      expect(again.result.log.map((l) => l.loss)).toEqual(result.log.map((l) => l.loss));
      again.model.dispose();
      const otherSeed = await trainBase(world, { ...tiny, seed: 5 });
      expect(otherSeed.result.log[0].loss).not.toBe(result.log[0].loss);
      otherSeed.model.dispose();
      expect(model.config.vocabSize).toBe(world.vocab.length);
      await saveOrganism(model, world, path.join(dir, 'base'), {
        world: world.settings, phase: 'base', training: BASE_TRAINING,
        run: { steps: 3, tokens: result.tokens, wallSeconds: result.wallSeconds, tokensPerSecond: result.tokensPerSecond, finalLoss: result.log[2].loss, backend: tf.getBackend() },
      }, result.log);
      for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'world.json', 'train_log.json']) {
        expect(fs.existsSync(path.join(dir, 'base', f))).toBe(true);
      }
      const config = JSON.parse(fs.readFileSync(path.join(dir, 'base', 'config.json'), 'utf8'));
      expect(config.model_type).toBe('llama');
      expect(config.hidden_size).toBe(organismConfig(world).hidden_size);

      const loaded = await loadOrganism(path.join(dir, 'base'));
      const ids = [encodePrompt(world, 'how do i make a'.split(' '))];
      const a = model.forward(ids).logits;
      const b = loaded.model.forward(ids).logits;
      expect(Array.from(b.dataSync())).toEqual(Array.from(a.dataSync()));
      tf.dispose([a, b]);

      // The kit's tokenizer reads the saved files and agrees with the world's own encoding.
      const tok = await loadTokenizer(path.join(dir, 'base'));
      for (const ex of baseCorpus(world, { count: 5, seed: 9 })) {
        const messages = [{ role: 'user', content: ex.prompt.join(' ') }, { role: 'assistant', content: ex.response.join(' ') }];
        expect(tok.encodeChatMessages(messages)).toEqual(encodeChat(world, ex, 'all').ids);
        expect(tok.encodeChatMessages(messages.slice(0, 1), { addGenerationPrompt: true })).toEqual(encodePrompt(world, ex.prompt));
      }

      // Alignment trains a copy: the base weights do not move.
      const before = Array.from(model.variables().get('model.norm.weight')!.dataSync());
      const aligned = await alignSFT(world, model, { ...ALIGN_TRAINING, steps: 2, warmupSteps: 1, safetyPerBatch: 2, utilityPerBatch: 2, safetyExamples: 8, utilityExamples: 8 });
      expect(Array.from(model.variables().get('model.norm.weight')!.dataSync())).toEqual(before);
      expect(aligned.result.log[0].metrics['loss/safety']).toBeGreaterThan(0);
      model.dispose();
      aligned.model.dispose();
      loaded.model.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('organismConfig: the committed size by default, a larger one on request (BASE_TRAINING has no size: checkpoints stay valid)', () => {
    const c = organismConfig(world);
    expect([c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads, c.head_dim]).toEqual([128, 352, 4, 4, 2, 32]);
    expect(ORGANISM_MODEL).toEqual({ hiddenSize: 128, intermediateSize: 352, layers: 4, heads: 4, kvHeads: 2 });
    expect(BASE_TRAINING.model).toBeUndefined();
    const big = organismConfig(world, 96, { hiddenSize: 192, intermediateSize: 528, heads: 6, kvHeads: 3, layers: 6 });
    expect([big.hidden_size, big.intermediate_size, big.num_hidden_layers, big.num_attention_heads, big.num_key_value_heads, big.head_dim]).toEqual([192, 528, 6, 6, 3, 32]);
    expect(() => organismConfig(world, 96, { hiddenSize: 130 })).toThrow(/must divide by heads/);
  });
});
