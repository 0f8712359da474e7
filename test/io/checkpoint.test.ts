// Checkpoint folders: save/load round trips (F32/BF16/F16, tied embeddings, tokenizer files),
// sharded indexes, config normalisation across transformers 4/5 spellings, and clear errors.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from '../../lib/engine/tf.js';
import {
  bf16ToF32, copyFileAtomic, f16ToF32, f32ToBf16, f32ToF16, fromHF, loadSafetensors, readSafetensorsHeader, writeFileAtomic, writeSafetensors,
} from '../../lib/io/index.js';
import { createModel, loadModel, saveModel, type Decoder } from '../../lib/model/index.js';
import { fixtureDir, loadExpected, relErr, rows } from '../model/helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-ckpt-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const fixtureConfig = (name: string) => JSON.parse(fs.readFileSync(path.join(fixtureDir(name), 'config.json'), 'utf8'));

const tinyLlama = {
  model_type: 'llama',
  vocab_size: 50,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
  max_position_embeddings: 64,
  tie_word_embeddings: true,
  bos_token_id: 1,
  eos_token_id: 2,
  pad_token_id: 0,
  initializer_range: 0.1,
};
const ids = [
  [1, 5, 9, 33, 2, 7],
  [1, 44, 3, 3, 12, 49],
];

function logitsOf(model: Decoder, input: number[][]): Float32Array {
  const out = model.forward(input);
  const data = out.logits.dataSync() as Float32Array;
  out.logits.dispose();
  return data;
}

describe('saveModel / loadModel', () => {
  it('F32 round trip is exact; tied embeddings write no lm_head; tokenizer files are copied', async () => {
    const model = createModel(tinyLlama, { seed: 3 });
    const dir = path.join(tmp, 'tiny-f32');
    await saveModel(model, dir, { tokenizer: path.join('node_modules', '@lenml', 'tokenizer-llama2', 'models') });
    expect(fs.existsSync(path.join(dir, 'tokenizer.json'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'tokenizer_config.json'))).toBe(true);
    const header = readSafetensorsHeader(path.join(dir, 'model.safetensors'));
    expect(header.metadata.format).toBe('pt');
    expect(header.tensors.has('lm_head.weight')).toBe(false);
    expect(header.tensors.get('model.layers.1.self_attn.k_proj.weight')!.shape).toEqual([16, 32]);
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    expect(config).toMatchObject({ model_type: 'llama', hidden_size: 32, num_key_value_heads: 2, tie_word_embeddings: true, torch_dtype: 'float32' });
    const reloaded = await loadModel(dir);
    expect(Array.from(logitsOf(reloaded, ids))).toEqual(Array.from(logitsOf(model, ids)));
    model.dispose();
    reloaded.dispose();
  });

  it.each([
    ['BF16', (x: Float32Array) => bf16ToF32(f32ToBf16(x))],
    ['F16', (x: Float32Array) => f16ToF32(f32ToF16(x))],
  ] as const)('%s weights are rounded once on save and converted to float32 on load', async (dtype, round) => {
    const model = createModel({ ...tinyLlama, tie_word_embeddings: false }, { seed: 4 });
    const dir = path.join(tmp, `tiny-${dtype}`);
    await saveModel(model, dir, { dtype });
    const header = readSafetensorsHeader(path.join(dir, 'model.safetensors'));
    expect([...header.tensors.values()].every((t) => t.dtype === dtype)).toBe(true);
    const reloaded = await loadModel(dir);
    for (const [name, v] of model.variables()) {
      const expected = round(v.dataSync() as Float32Array);
      expect(Array.from(reloaded.variables().get(name)!.dataSync()), name).toEqual(Array.from(expected));
    }
    model.dispose();
    reloaded.dispose();
  });

  it.each(['gemma2-A', 'gpt2-A', 'gemma3_text-A'])('a loaded %s saved again reloads with the reference logits', async (name) => {
    const model = await loadModel(fixtureDir(name));
    const dir = path.join(tmp, `resaved-${name}`);
    await saveModel(model, dir);
    model.dispose();
    const reloaded = await loadModel(dir);
    const exp = loadExpected(name);
    expect(relErr(logitsOf(reloaded, rows(exp.get('input_ids')!)), exp.get('logits')!.data)).toBeLessThan(1e-4);
    reloaded.dispose();
  });

  it('sharded checkpoints (model.safetensors.index.json) load like the single file', async () => {
    const dir = path.join(tmp, 'sharded');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(fixtureDir('llama-A'), 'config.json'), path.join(dir, 'config.json'));
    const all = [...loadSafetensors(path.join(fixtureDir('llama-A'), 'model.safetensors')).values()];
    const half = Math.ceil(all.length / 2);
    const shards = [all.slice(0, half), all.slice(half)];
    const weightMap: Record<string, string> = {};
    shards.forEach((ts, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeSafetensors(path.join(dir, file), ts.map((t) => ({ name: t.name, shape: t.shape, data: t.data })));
      for (const t of ts) weightMap[t.name] = file;
    });
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const sharded = await loadModel(dir);
    const single = await loadModel(fixtureDir('llama-A'));
    expect(Array.from(logitsOf(sharded, ids))).toEqual(Array.from(logitsOf(single, ids)));
    sharded.dispose();
    single.dispose();

    // an index pointing at a missing shard
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { ...weightMap, 'model.norm.weight': 'model-00003-of-00002.safetensors' } }));
    await expect(loadModel(dir)).rejects.toThrow(/model\.safetensors\.index\.json: shard model-00003-of-00002\.safetensors is listed but missing/);
  });
});

describe('loadModel errors name the file, tensor and expected shape', () => {
  function writeVariant(name: string, edit: (tensors: { name: string; shape: number[]; data: Float32Array }[]) => void, config?: Record<string, unknown>): string {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config ?? fixtureConfig('llama-A')));
    const tensors = [...loadSafetensors(path.join(fixtureDir('llama-A'), 'model.safetensors')).values()].map((t) => ({
      name: t.name,
      shape: t.shape,
      data: t.data as Float32Array,
    }));
    edit(tensors);
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    return dir;
  }

  it('a tensor with the wrong shape', async () => {
    const dir = writeVariant('wrong-shape', (ts) => {
      const q = ts.find((t) => t.name === 'model.layers.1.self_attn.q_proj.weight')!;
      q.shape = [32, 128];
    });
    await expect(loadModel(dir)).rejects.toThrow(
      `loadModel ${path.join(dir, 'model.safetensors')}: tensor "model.layers.1.self_attn.q_proj.weight" has shape [32,128], expected [64,64] from ${path.join(dir, 'config.json')}`,
    );
  });
  it('a missing tensor', async () => {
    const dir = writeVariant('missing', (ts) => ts.splice(ts.findIndex((t) => t.name === 'lm_head.weight'), 1));
    await expect(loadModel(dir)).rejects.toThrow(/checkpoint has no tensor "lm_head\.weight" \(expected shape \[320,64\] for llama, tie_word_embeddings is false\)/);
  });
  it('an unexpected tensor', async () => {
    const dir = writeVariant('extra', (ts) => ts.push({ name: 'model.layers.0.self_attn.q_norm.weight', shape: [16], data: new Float32Array(16) }));
    await expect(loadModel(dir)).rejects.toThrow(/unexpected tensors for llama: model\.layers\.0\.self_attn\.q_norm\.weight/);
  });
  it('an unknown model_type', async () => {
    const dir = writeVariant('unknown', () => {}, { ...fixtureConfig('llama-A'), model_type: 'phi3' });
    await expect(loadModel(dir)).rejects.toThrow(`fromHF ${path.join(dir, 'config.json')}: unsupported model_type "phi3"; supported: llama, qwen2, qwen3, mistral, gemma, gemma2, gemma3_text, gpt2`);
  });
  it('a truncated weights file', async () => {
    const dir = writeVariant('truncated', () => {});
    const file = path.join(dir, 'model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 100);
    await expect(loadModel(dir)).rejects.toThrow(/model\.safetensors: tensors cover \d+ data bytes but the data section has \d+|run past the end of the data section/);
  });
  it('invalid configs', () => {
    expect(() => fromHF({ ...tinyLlama, num_key_value_heads: 3 }, 'cfg.json')).toThrow('fromHF cfg.json: `nHeads` (4) must be a multiple of `nKvHeads` (3)');
    // ... and names the config.json keys behind the kit's field names
    expect(() => fromHF({ ...tinyLlama, num_key_value_heads: 3 }, 'cfg.json')).toThrow(/\(config\.json: num_attention_heads .*; num_key_value_heads\)$/);
    expect(() => fromHF({ ...tinyLlama, hidden_size: undefined }, 'cfg.json')).toThrow('fromHF cfg.json: missing required field "hidden_size" (model_type llama)');
    expect(() => fromHF({ ...tinyLlama, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'cfg.json')).toThrow('fromHF cfg.json: unsupported rope_type "yarn"');
  });
  it('leaves no tensors behind when loading fails', async () => {
    const before = tf.memory().numTensors;
    await expect(loadModel(path.join(tmp, 'wrong-shape'))).rejects.toThrow();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('config normalisation', () => {
  it('llama: transformers 4 (rope_theta + rope_scaling) and 5 (rope_parameters) spellings agree', () => {
    const scaling = { factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 };
    const v4 = fromHF({ ...tinyLlama, rope_theta: 500000, rope_scaling: { rope_type: 'llama3', ...scaling } });
    const v5 = fromHF({ ...tinyLlama, rope_theta: undefined, rope_parameters: { rope_type: 'llama3', rope_theta: 500000, ...scaling } });
    expect({ ...v4, hf: undefined }).toEqual({ ...v5, hf: undefined });
    expect(v4.rope!.full).toEqual({ theta: 500000, type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 });
    // older configs spell rope_type as "type"
    expect(fromHF({ ...tinyLlama, rope_scaling: { type: 'linear', factor: 2 } }).rope!.full).toEqual({ theta: 10000, type: 'linear', factor: 2 });
  });

  it('gemma3_text: v4 (rope_theta, rope_local_base_freq, sliding_window_pattern) equals the v5 fixture config', () => {
    const v5 = fixtureConfig('gemma3_text-A');
    const v4 = { ...v5, rope_parameters: undefined, layer_types: undefined, _sliding_window_pattern: undefined, sliding_window_pattern: 6, rope_theta: 1e6, rope_local_base_freq: 10000 };
    const a = fromHF(v5);
    const b = fromHF(v4);
    expect({ ...b, hf: undefined }).toEqual({ ...a, hf: undefined });
    expect(a.rope).toEqual({ full: { theta: 1e6, type: 'default' }, sliding: { theta: 10000, type: 'default' } });
    const six = fromHF({ ...v4, num_hidden_layers: 7 });
    expect(six.layerTypes).toEqual(['sliding', 'sliding', 'sliding', 'sliding', 'sliding', 'full', 'sliding']);
    expect(a).toMatchObject({ qkNorm: true, sandwichNorm: true, normWeightOffset: 1, queryPreAttnScalar: 16, embedScale: 8, attnSoftcap: undefined });
  });

  it('gemma2 without layer_types alternates sliding/full starting with sliding', () => {
    const cfg = fromHF({ ...fixtureConfig('gemma2-A'), layer_types: undefined, num_hidden_layers: 4 });
    expect(cfg.layerTypes).toEqual(['sliding', 'full', 'sliding', 'full']);
    expect(cfg).toMatchObject({ attnSoftcap: 50, finalSoftcap: 30, slidingWindow: 8, act: 'gelu_tanh' });
  });

  it('mistral and qwen2 sliding windows', () => {
    expect(fromHF({ ...fixtureConfig('mistral-A'), sliding_window: 16 }).layerTypes).toEqual(['sliding', 'sliding']);
    expect(fromHF(fixtureConfig('mistral-A')).layerTypes).toEqual(['full', 'full']);
    const q = fromHF({ ...fixtureConfig('qwen2-A'), layer_types: undefined, num_hidden_layers: 4, use_sliding_window: true, sliding_window: 32, max_window_layers: 2 });
    expect(q.layerTypes).toEqual(['full', 'full', 'sliding', 'sliding']);
    expect(fromHF(fixtureConfig('qwen2-A'))).toMatchObject({ qkvBias: true, oBias: false, tieEmbeddings: false });
  });

  it('gpt2', () => {
    expect(fromHF(fixtureConfig('gpt2-A'))).toMatchObject({ norm: 'layer', positional: 'learned', dMlp: 256, nKvHeads: 4, tieEmbeddings: true, gatedMlp: false, act: 'gelu_tanh' });
  });
});

describe('checkpoint naming', () => {
  it('loads a gpt2 checkpoint saved without the "transformer." prefix (as on the Hub)', async () => {
    const dir = path.join(tmp, 'gpt2-hub-names');
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(path.join(fixtureDir('gpt2-A'), 'config.json'), path.join(dir, 'config.json'));
    const tensors = [...loadSafetensors(path.join(fixtureDir('gpt2-A'), 'model.safetensors')).values()].map((t) => ({
      name: t.name.replace(/^transformer\./, ''),
      shape: t.shape,
      data: t.data,
    }));
    // old checkpoints also carry the causal-mask buffer
    tensors.push({ name: 'h.0.attn.bias', shape: [1, 1, 2, 2], data: new Float32Array(4) });
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    const model = await loadModel(dir);
    const exp = loadExpected('gpt2-A');
    expect(relErr(logitsOf(model, rows(exp.get('input_ids')!)), exp.get('logits')!.data)).toBeLessThan(1e-4);
    model.dispose();
  });
});

describe('multimodal checkpoints (language model only)', () => {
  it.each([
    ['old layout (language_model.model.*)', (n: string) => `language_model.${n}`, ''],
    ['new layout (model.language_model.*)', (n: string) => n.replace(/^model\./, 'model.language_model.'), 'model.'],
  ])('a Gemma 3 config with text_config and vision weights, %s', async (_name, rename, visionPrefix) => {
    const dir = path.join(tmp, `gemma3-mm-${rename('model.x').split('.')[0]}`);
    fs.mkdirSync(dir, { recursive: true });
    const text = fixtureConfig('gemma3_text-A');
    // the wrapper lists only non-default text fields; these equal Gemma3TextConfig's defaults and are left out
    const { model_type: _mt, architectures: _a, rope_parameters: _rp, layer_types: _lt, _sliding_window_pattern: _sp, ...textFields } = text;
    const config = {
      model_type: 'gemma3',
      architectures: ['Gemma3ForConditionalGeneration'],
      text_config: { ...textFields, model_type: 'gemma3_text', rope_theta: 1e6, rope_local_base_freq: 10000, sliding_window_pattern: 6 },
      vision_config: { model_type: 'siglip_vision_model', hidden_size: 8 },
    };
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
    const tensors: { name: string; shape: number[]; data: Float32Array | Int32Array }[] = [...loadSafetensors(path.join(fixtureDir('gemma3_text-A'), 'model.safetensors')).values()].map((t) => ({
      name: rename(t.name),
      shape: t.shape,
      data: t.data,
    }));
    tensors.push({ name: `${visionPrefix}vision_tower.vision_model.post_layernorm.weight`, shape: [8], data: new Float32Array(8) });
    tensors.push({ name: `${visionPrefix}multi_modal_projector.mm_input_projection_weight`, shape: [8, 64], data: new Float32Array(512) });
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    const model = await loadModel(dir);
    expect(model.config.modelType).toBe('gemma3_text');
    const exp = loadExpected('gemma3_text-A');
    expect(relErr(logitsOf(model, rows(exp.get('input_ids')!)), exp.get('logits')!.data)).toBeLessThan(1e-4);
    // saved back as a text-only Gemma3ForCausalLM
    const out = path.join(dir, 'text-only');
    await saveModel(model, out);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'))).toMatchObject({ model_type: 'gemma3_text', architectures: ['Gemma3ForCausalLM'], vocab_size: 320 });
    model.dispose();
    const again = await loadModel(out);
    expect(relErr(logitsOf(again, rows(exp.get('input_ids')!)), exp.get('logits')!.data)).toBeLessThan(1e-4);
    again.dispose();
  });

  it('fills Gemma3TextConfig defaults for fields a text_config leaves out', () => {
    const cfg = fromHF({ model_type: 'gemma3', text_config: { hidden_size: 2560, intermediate_size: 10240, num_hidden_layers: 34, sliding_window: 1024, rope_scaling: { rope_type: 'linear', factor: 8 } } });
    expect(cfg).toMatchObject({ modelType: 'gemma3_text', vocabSize: 262208, nHeads: 8, nKvHeads: 4, dHead: 256, slidingWindow: 1024, queryPreAttnScalar: 256, normEps: 1e-6 });
    expect(cfg.rope).toEqual({ full: { theta: 1e6, type: 'linear', factor: 8 }, sliding: { theta: 10000, type: 'default' } });
    expect(cfg.layerTypes.filter((t) => t === 'full')).toHaveLength(5); // layers 5, 11, 17, 23, 29
  });
});

describe('atomic writes', () => {
  it('writeFileAtomic / copyFileAtomic replace a file whole and leave no temp file behind', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-atomic-'));
    try {
      const file = path.join(dir, 'a.json');
      writeFileAtomic(file, 'old');
      writeFileAtomic(file, 'new');
      copyFileAtomic(file, path.join(dir, 'b.json'));
      expect(fs.readFileSync(path.join(dir, 'b.json'), 'utf8')).toBe('new');
      // A failed write (target is a directory) throws and cleans up its temp file.
      fs.mkdirSync(path.join(dir, 'c.json'));
      expect(() => writeFileAtomic(path.join(dir, 'c.json'), 'x')).toThrow();
      expect(fs.readdirSync(dir).sort()).toEqual(['a.json', 'b.json', 'c.json']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
