// LoRA adapters in PEFT's format (lib/model/lora.ts) on the tiny transformers fixtures (llama,
// qwen2, gemma2, gpt2): the adapter forward against a model whose weights were merged on the host
// (W + alpha/r B A, computed here in float64), mergeLora against the same reference, PEFT's tensor
// names and adapter_config.json fields, a round trip through the files, a hand-written PEFT-style
// adapter (bf16, rsLoRA, PEFT's default targets), LoRA fine-tuning through fineTune (only adapters
// move, loss falls, exact resume with dropout), and the errors.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from '../../lib/engine/tf.js';
import { readSafetensorsHeader, writeSafetensors, f32ToBf16, bf16ToF32 } from '../../lib/io/index.js';
import {
  addLora, getLoraConfig, loadLoraAdapter, loadModel, loraParameters, mergeLora, saveLoraAdapter, saveModel, setLoraTraining, type Decoder,
} from '../../lib/model/index.js';
import { cloneModel, fineTune, type FineTuneSettings } from '../../lib/train/fineTune.js';
import type { StepLog } from '../../lib/train/trainer.js';
import { Rng } from '../../lib/util/rng.js';
import { fixtureDir, relErr } from './helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-lora-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const IDS = [
  [1, 17, 250, 33, 4, 99, 123, 7, 64, 301, 12, 5],
  [1, 45, 2, 200, 9, 88, 31, 160, 3, 77, 140, 19],
];
const ATTN = ['q_proj', 'k_proj', 'v_proj', 'o_proj'];

function logits(model: Decoder, ids = IDS): Float32Array {
  const out = model.forward(ids);
  const data = out.logits.dataSync() as Float32Array;
  out.logits.dispose();
  return data;
}

/** Fill every lora_B (zero after addLora) with seeded values, so the adapters change the outputs. */
function randomiseB(model: Decoder, seed: number, scale = 0.2): void {
  const rng = new Rng(seed);
  for (const [name, v] of loraParameters(model)) {
    if (!name.endsWith('lora_B.weight')) continue;
    tf.tidy(() => v.assign(tf.tensor(Float32Array.from({ length: v.size }, () => (rng.next() - 0.5) * 2 * scale), v.shape)));
  }
}

/**
 * The reference: the base checkpoint with W + scaling * B A applied on the host in float64 (for
 * gpt2's Conv1D [in, out] weights the update is transposed), read back as a plain model.
 */
async function hostMerged(dir: string, adapted: Decoder, scaling: number): Promise<Decoder> {
  const ref = await loadModel(dir);
  const lora = loraParameters(adapted);
  const weights = ref.variables();
  const gpt2 = ref.config.modelType === 'gpt2';
  for (const [name] of lora) {
    if (!name.endsWith('.lora_A.weight')) continue;
    const module = name.slice('base_model.model.'.length, -'.lora_A.weight'.length);
    const A = lora.get(name)!;
    const B = lora.get(name.replace('lora_A', 'lora_B'))!;
    const [r, inDim] = A.shape;
    const outDim = B.shape[0];
    const a = A.dataSync();
    const b = B.dataSync();
    const W = weights.get(`${module}.weight`)!;
    const w = Float64Array.from(W.dataSync());
    for (let o = 0; o < outDim; o++) {
      for (let i = 0; i < inDim; i++) {
        let s = 0;
        for (let k = 0; k < r; k++) s += b[o * r + k] * a[k * inDim + i];
        w[gpt2 ? i * outDim + o : o * inDim + i] += scaling * s;
      }
    }
    tf.tidy(() => W.assign(tf.tensor(Float32Array.from(w), W.shape)));
  }
  return ref;
}

describe('LoRA forward', () => {
  for (const family of ['llama-A', 'qwen2-A', 'gemma2-A', 'gpt2-A']) {
    it(`${family}: adapters add scaling * B A x to every targeted layer (= the host-merged model, and = mergeLora)`, async () => {
      const before = tf.memory().numTensors;
      const model = await loadModel(fixtureDir(family));
      const plain = logits(model);
      addLora(model, { r: 4, alpha: 8 });
      // B = 0: a fresh adapter changes nothing, bit for bit
      expect(logits(model)).toEqual(plain);
      randomiseB(model, 7);
      const adapted = logits(model);
      const ref = await hostMerged(fixtureDir(family), model, 8 / 4);
      const expected = logits(ref);
      expect(relErr(adapted, expected)).toBeLessThan(2e-6);
      expect(relErr(adapted, plain)).toBeGreaterThan(0.05); // the adapters do change the outputs
      mergeLora(model);
      expect(getLoraConfig(model)).toBeUndefined();
      expect(relErr(logits(model), expected)).toBeLessThan(2e-6);
      model.dispose();
      ref.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it('default targets: every block Linear (gpt2: c_attn, c_proj, c_fc); A is PEFT\'s kaiming-uniform, seeded; B is zero', async () => {
    const llama = await loadModel(fixtureDir('llama-A'));
    addLora(llama, { r: 8, alpha: 16, seed: 3 });
    const names = [...loraParameters(llama).keys()];
    expect(names).toHaveLength(2 * 2 * 7);
    expect(names.slice(0, 4)).toEqual([
      'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight',
      'base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight', 'base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight',
    ]);
    const p = loraParameters(llama);
    // q_proj: W [64, 64]; k_proj [32, 64]; down_proj [64, 160]
    expect(p.get('base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight')!.shape).toEqual([8, 64]);
    expect(p.get('base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight')!.shape).toEqual([32, 8]);
    const downA = p.get('base_model.model.model.layers.1.mlp.down_proj.lora_A.weight')!;
    expect(downA.shape).toEqual([8, 160]);
    // U(-1/sqrt(in), 1/sqrt(in)): every value inside, spread over the range (variance bound^2 / 3)
    const a = Array.from(downA.dataSync());
    const bound = 1 / Math.sqrt(160);
    expect(Math.max(...a.map(Math.abs))).toBeLessThanOrEqual(bound);
    const variance = a.reduce((s, x) => s + x * x, 0) / a.length;
    expect(variance / (bound * bound / 3)).toBeGreaterThan(0.85);
    expect(variance / (bound * bound / 3)).toBeLessThan(1.15);
    expect(p.get('base_model.model.model.layers.1.mlp.down_proj.lora_B.weight')!.dataSync().every((x) => x === 0)).toBe(true);
    // seeded: same seed same A, another seed another A
    const again = await loadModel(fixtureDir('llama-A'));
    addLora(again, { r: 8, alpha: 16, seed: 3 });
    expect(Array.from(loraParameters(again).get('base_model.model.model.layers.1.mlp.down_proj.lora_A.weight')!.dataSync())).toEqual(a);
    const other = await loadModel(fixtureDir('llama-A'));
    addLora(other, { r: 8, alpha: 16, seed: 4 });
    expect(Array.from(loraParameters(other).get('base_model.model.model.layers.1.mlp.down_proj.lora_A.weight')!.dataSync())).not.toEqual(a);
    for (const m of [llama, again, other]) m.dispose();

    const gpt2 = await loadModel(fixtureDir('gpt2-A'));
    addLora(gpt2, { r: 2, alpha: 4 });
    const g = loraParameters(gpt2);
    expect([...g.keys()].filter((n) => n.includes('.h.0.') && n.endsWith('lora_A.weight'))).toEqual([
      'base_model.model.transformer.h.0.attn.c_attn.lora_A.weight', 'base_model.model.transformer.h.0.attn.c_proj.lora_A.weight',
      'base_model.model.transformer.h.0.mlp.c_fc.lora_A.weight', 'base_model.model.transformer.h.0.mlp.c_proj.lora_A.weight',
    ]);
    // Conv1D c_attn stores W [64, 192] ([in, out]); A and B keep nn.Linear's layout, as in PEFT
    expect(g.get('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight')!.shape).toEqual([2, 64]);
    expect(g.get('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight')!.shape).toEqual([192, 2]);
    expect(g.get('base_model.model.transformer.h.0.mlp.c_fc.lora_B.weight')!.shape).toEqual([256, 2]);
    gpt2.dispose();
  });

  it('target modules follow PEFT\'s matching: names, dotted suffixes, a whole-name regular expression', async () => {
    const model = await loadModel(fixtureDir('llama-A'));
    const modules = (config: Parameters<typeof addLora>[1]) => {
      addLora(model, config);
      const names = [...loraParameters(model).keys()].filter((n) => n.endsWith('lora_A.weight')).map((n) => n.slice('base_model.model.'.length, -'.lora_A.weight'.length));
      mergeLora(model);
      return names;
    };
    expect(modules({ r: 2, alpha: 2, targetModules: ['q_proj', 'mlp.down_proj'] })).toEqual([
      'model.layers.0.self_attn.q_proj', 'model.layers.0.mlp.down_proj', 'model.layers.1.self_attn.q_proj', 'model.layers.1.mlp.down_proj',
    ]);
    expect(modules({ r: 2, alpha: 2, targetModules: 'model\\.layers\\.1\\.self_attn\\.(q|v)_proj' })).toEqual(['model.layers.1.self_attn.q_proj', 'model.layers.1.self_attn.v_proj']);
    expect(modules({ r: 2, alpha: 2, targetModules: 'all-linear' })).toHaveLength(14);
    model.dispose();
  });

  it('dropout acts only while a training step has switched it on, with masks fixed by (seed, step)', async () => {
    const model = await loadModel(fixtureDir('llama-A'));
    addLora(model, { r: 4, alpha: 8, dropout: 0.5, targetModules: ATTN });
    randomiseB(model, 1);
    const evalOut = logits(model);
    expect(logits(model)).toEqual(evalOut);
    setLoraTraining(model, 3);
    const step3 = logits(model);
    setLoraTraining(model, 3);
    const step3Again = logits(model);
    setLoraTraining(model, 4);
    const step4 = logits(model);
    setLoraTraining(model, null);
    expect(step3Again).toEqual(step3);
    expect(relErr(step3, evalOut)).toBeGreaterThan(1e-3);
    expect(relErr(step4, step3)).toBeGreaterThan(1e-3);
    expect(logits(model)).toEqual(evalOut);
    model.dispose();
  });

  it('cloneModel copies the adapters into independent variables', async () => {
    const model = await loadModel(fixtureDir('llama-A'));
    addLora(model, { r: 4, alpha: 8, targetModules: ATTN, seed: 5 });
    randomiseB(model, 2);
    const copy = cloneModel(model);
    expect(getLoraConfig(copy)).toEqual(getLoraConfig(model));
    const expected = logits(model);
    expect(logits(copy)).toEqual(expected);
    randomiseB(copy, 3);
    expect(logits(model)).toEqual(expected);
    copy.dispose();
    model.dispose();
  });
});

describe('LoRA files (PEFT format)', () => {
  it('saveLoraAdapter writes adapter_config.json and adapter_model.safetensors as PEFT does; loadLoraAdapter restores the same logits', async () => {
    const model = await loadModel(fixtureDir('llama-A'));
    addLora(model, { r: 4, alpha: 16, dropout: 0.05, targetModules: ['v_proj', 'q_proj'], seed: 9 });
    randomiseB(model, 11);
    const expected = logits(model);
    const dir = path.join(tmp, 'adapter-llama');
    await saveLoraAdapter(model, dir, { baseModelNameOrPath: 'fixtures/llama-A' });
    expect(fs.readdirSync(dir).sort()).toEqual(['adapter_config.json', 'adapter_model.safetensors']);
    const text = fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8');
    const config = JSON.parse(text);
    // PEFT writes json.dumps(indent=2, sort_keys=True)
    expect(Object.keys(config)).toEqual(Object.keys(config).sort());
    expect(text.startsWith('{\n  "alpha_pattern": {},\n')).toBe(true);
    expect(config).toMatchObject({
      peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 16, lora_dropout: 0.05, target_modules: ['q_proj', 'v_proj'], bias: 'none',
      fan_in_fan_out: false, inference_mode: true, use_dora: false, use_rslora: false, base_model_name_or_path: 'fixtures/llama-A',
      modules_to_save: null, layers_to_transform: null, init_lora_weights: true, rank_pattern: {}, alpha_pattern: {}, lora_bias: false, revision: null,
    });
    const header = readSafetensorsHeader(path.join(dir, 'adapter_model.safetensors'));
    expect(header.metadata).toEqual({ format: 'pt' });
    expect([...header.tensors.keys()].sort()).toEqual([0, 1].flatMap((i) => ['q_proj', 'v_proj'].flatMap((m) => ['A', 'B'].map((w) => `base_model.model.model.layers.${i}.self_attn.${m}.lora_${w}.weight`))).sort());
    expect(header.tensors.get('base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight')!.shape).toEqual([32, 4]);

    const fresh = await loadModel(fixtureDir('llama-A'));
    const loaded = await loadLoraAdapter(fresh, dir);
    expect(loaded).toEqual({ r: 4, alpha: 16, dropout: 0.05, targetModules: ['q_proj', 'v_proj'], seed: 0, useRslora: false });
    expect(logits(fresh)).toEqual(expected);
    // the merged model saves as a full checkpoint that loads without any adapter
    mergeLora(fresh);
    const full = path.join(tmp, 'merged-llama');
    await saveModel(fresh, full);
    const reloaded = await loadModel(full);
    expect(relErr(logits(reloaded), expected)).toBeLessThan(2e-6);
    for (const m of [model, fresh, reloaded]) m.dispose();
  });

  it('gpt2: fan_in_fan_out true and Conv1D module names', async () => {
    const model = await loadModel(fixtureDir('gpt2-A'));
    addLora(model, { r: 2, alpha: 4, targetModules: ['c_attn', 'mlp.c_proj'] });
    randomiseB(model, 4);
    const expected = logits(model);
    const dir = path.join(tmp, 'adapter-gpt2');
    await saveLoraAdapter(model, dir, { dtype: 'F32' });
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
    expect(config).toMatchObject({ fan_in_fan_out: true, target_modules: ['c_attn', 'mlp.c_proj'], base_model_name_or_path: null });
    const names = [...readSafetensorsHeader(path.join(dir, 'adapter_model.safetensors')).tensors.keys()];
    expect(names).toContain('base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight');
    expect(names.some((n) => n.includes('attn.c_proj'))).toBe(false);
    const fresh = await loadModel(fixtureDir('gpt2-A'));
    await loadLoraAdapter(fresh, dir);
    expect(logits(fresh)).toEqual(expected);
    model.dispose();
    fresh.dispose();
  });

  it('reads an adapter written the way PEFT writes one: default target_modules (null), bf16 weights, rsLoRA scaling', async () => {
    // adapter_config.json of PeftModel.save_pretrained for LoraConfig(r=2, lora_alpha=6, use_rslora=True)
    // on a LlamaForCausalLM, trimmed to fields an older PEFT writes; target_modules left to PEFT's
    // per-architecture default (q_proj, v_proj for llama).
    const dir = path.join(tmp, 'peft-written');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({
      auto_mapping: null, base_model_name_or_path: 'fixtures/llama-A', bias: 'none', fan_in_fan_out: false, inference_mode: true, init_lora_weights: true,
      layers_pattern: null, layers_to_transform: null, lora_alpha: 6, lora_dropout: 0.1, modules_to_save: null, peft_type: 'LORA', r: 2, revision: null,
      target_modules: null, task_type: 'CAUSAL_LM', use_rslora: true, some_future_field: { ignored: true },
    }, null, 2));
    const rng = new Rng(21);
    const tensors = [0, 1].flatMap((i) => [['q_proj', 64], ['v_proj', 32]].flatMap(([m, out]) => [
      { name: `base_model.model.model.layers.${i}.self_attn.${m}.lora_A.weight`, shape: [2, 64] },
      { name: `base_model.model.model.layers.${i}.self_attn.${m}.lora_B.weight`, shape: [out as number, 2] },
    ])).map((t) => ({ ...t, dtype: 'BF16' as const, data: Float32Array.from({ length: t.shape[0] * t.shape[1] }, () => rng.next() - 0.5) }));
    writeSafetensors(path.join(dir, 'adapter_model.safetensors'), tensors, { format: 'pt' });

    const model = await loadModel(fixtureDir('llama-A'));
    expect(await loadLoraAdapter(model, dir)).toMatchObject({ r: 2, alpha: 6, dropout: 0.1, targetModules: ['q_proj', 'v_proj'], useRslora: true });
    const params = loraParameters(model);
    // bf16 in the file: the values are the bf16-rounded ones
    const first = tensors[0];
    expect(Array.from(params.get(first.name)!.dataSync())).toEqual(Array.from(bf16ToF32(f32ToBf16(first.data))));
    const ref = await hostMerged(fixtureDir('llama-A'), model, 6 / Math.sqrt(2));
    expect(relErr(logits(model), logits(ref))).toBeLessThan(2e-6);
    model.dispose();
    ref.dispose();
  });
});

describe('LoRA fine-tuning (fineTune { lora })', () => {
  const settings: FineTuneSettings = { steps: 6, peakLr: 0.02, warmupSteps: 0, beta1: 0.9, beta2: 0.999, weightDecay: 0, clipNorm: 1, seed: 0 };
  const examples = [
    [1, 40, 41, 42, 43, 44, 45, 2], [1, 50, 51, 52, 53, 54, 2], [1, 60, 61, 62, 63, 64, 65, 66, 2], [1, 70, 71, 72, 73, 2],
  ].map((ids) => ({ ids, lossMask: ids.map((_, i) => (i >= 2 ? 1 : 0)) }));
  const sources = [{ name: 'toy', examples, perBatch: 2 }];
  const weightsOf = (m: Decoder) => new Map([...m.variables()].map(([n, v]) => [n, Array.from(v.dataSync())]));
  const loraOf = (m: Decoder) => new Map([...loraParameters(m)].map(([n, v]) => [n, Array.from(v.dataSync())]));

  it('trains only the adapters, lowers the loss, and returns a model that carries them', async () => {
    const base = await loadModel(fixtureDir('llama-A'));
    const baseWeights = weightsOf(base);
    const before = tf.memory().numTensors;
    const { model, result } = await fineTune(base, sources, 0, { ...settings, steps: 10 }, { lora: { r: 4, alpha: 8, targetModules: ATTN } });
    const losses = result.log.map((l) => l.loss);
    expect(losses.at(-1)!).toBeLessThan(losses[0] * 0.8);
    // the base weights of the copy are the original ones, bit for bit; the caller's model is untouched
    expect(weightsOf(model)).toEqual(baseWeights);
    expect(weightsOf(base)).toEqual(baseWeights);
    expect(getLoraConfig(base)).toBeUndefined();
    expect(getLoraConfig(model)).toMatchObject({ r: 4, alpha: 8, targetModules: ATTN });
    for (const [name, v] of loraOf(model)) if (name.endsWith('lora_B.weight')) expect(v.some((x) => x !== 0)).toBe(true);
    expect(relErr(logits(model), logits(base))).toBeGreaterThan(1e-3);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
    base.dispose();
  });

  it('an interrupted and resumed LoRA run (dropout on) equals an uninterrupted one; another LoRA config is another run', async () => {
    const base = await loadModel(fixtureDir('llama-A'));
    const lora = { r: 4, alpha: 8, dropout: 0.2, targetModules: ATTN, seed: 1 };
    const dir = path.join(tmp, 'resume');
    const straight = await fineTune(base, sources, 0, settings, { lora });
    const crash = (l: StepLog) => {
      if (l.step === 4) throw new Error('simulated crash');
    };
    await expect(fineTune(base, sources, 0, settings, { lora, checkpoint: { dir, every: 3 }, onStep: crash })).rejects.toThrow('simulated crash');
    const resumed = await fineTune(base, sources, 0, settings, { lora, checkpoint: { dir, every: 3 } });
    expect(resumed.result.resumedFrom).toBe(3);
    expect(resumed.result.log.map((l) => l.loss)).toEqual(straight.result.log.map((l) => l.loss));
    expect(loraOf(resumed.model)).toEqual(loraOf(straight.model));
    // dropout did act in training: without it the same run gives other losses
    const noDropout = await fineTune(base, sources, 0, settings, { lora: { ...lora, dropout: 0 } });
    expect(noDropout.result.log.map((l) => l.loss).slice(1)).not.toEqual(straight.result.log.map((l) => l.loss).slice(1));
    await expect(fineTune(base, sources, 0, settings, { lora: { ...lora, r: 8 }, checkpoint: { dir, every: 3 } }))
      .rejects.toThrow(/belongs to another run: `run.lora.r` was 4, this run has 8/);
    for (const m of [straight.model, resumed.model, noDropout.model, base]) m.dispose();
  });

  it('fine-tuning a model that carries adapters starts from its merged weights (with new adapters or in full)', async () => {
    const base = await loadModel(fixtureDir('llama-A'));
    addLora(base, { r: 2, alpha: 4, targetModules: ['o_proj'] });
    randomiseB(base, 8);
    const expected = logits(base);
    const { model } = await fineTune(base, sources, 0, { ...settings, steps: 1, peakLr: 1e-9 }, { lora: { r: 2, alpha: 4, targetModules: ['q_proj'] } });
    expect(getLoraConfig(model)).toMatchObject({ targetModules: ['q_proj'] });
    expect(relErr(logits(model), expected)).toBeLessThan(2e-6);
    const oProj = (m: Decoder) => Array.from(m.variables().get('model.layers.0.self_attn.o_proj.weight')!.dataSync());
    expect(oProj(model)).not.toEqual(oProj(base)); // merged into the copy's weights
    expect(getLoraConfig(base)).toMatchObject({ targetModules: ['o_proj'] }); // the caller's model keeps its adapters
    // a full fine-tune too: the result is a plain model
    const full = await fineTune(base, sources, 0, { ...settings, steps: 1, peakLr: 1e-9 });
    expect(getLoraConfig(full.model)).toBeUndefined();
    expect(relErr(logits(full.model), expected)).toBeLessThan(2e-6);
    full.model.dispose();
    model.dispose();
    base.dispose();
  });
});

describe('LoRA errors', () => {
  it('bad configs and targets say what is wrong and what the model has', async () => {
    const model = await loadModel(fixtureDir('llama-A'));
    expect(() => addLora(model, { r: 0, alpha: 8 })).toThrow('addLora: LoRA `r` must be a positive integer, but is 0');
    expect(() => addLora(model, { r: 2, alpha: 8, dropout: 1 })).toThrow('LoRA `dropout` must be a number in [0, 1), but is 1');
    expect(() => addLora(model, { r: 2, alpha: 8, rank: 3 } as never)).toThrow('unknown LoRA option `rank`; known: r, alpha, dropout, targetModules, seed, useRslora');
    expect(() => addLora(model, { r: 2, alpha: 8, targetModules: ['q_proj', 'q_prj'] }))
      .toThrow('addLora: LoRA target module "q_prj" matches no Linear layer of this llama model; its block layers are self_attn.q_proj, self_attn.k_proj, self_attn.v_proj, self_attn.o_proj, mlp.gate_proj, mlp.up_proj, mlp.down_proj');
    expect(() => addLora(model, { r: 2, alpha: 8, targetModules: ['lm_head'] })).toThrow(/match no Linear layer .* lm_head and the embeddings cannot be adapted/);
    expect(() => addLora(model, { r: 2, alpha: 8, targetModules: '(' })).toThrow(/`targetModules` "\(" is not a valid regular expression/);
    expect(() => mergeLora(model)).toThrow('mergeLora: the model has no LoRA adapters (addLora or loadLoraAdapter first)');
    await expect(saveLoraAdapter(model, path.join(tmp, 'none'))).rejects.toThrow('saveLoraAdapter: the model has no LoRA adapters');
    addLora(model, { r: 2, alpha: 8, targetModules: ['q_proj'] });
    expect(() => addLora(model, { r: 2, alpha: 8 })).toThrow('addLora: the model already has LoRA adapters; mergeLora(model) first, or use a fresh model');
    // a full checkpoint would silently drop the adapters
    await expect(saveModel(model, path.join(tmp, 'full-with-adapters'))).rejects.toThrow(/saveModel: the model carries LoRA adapters.*saveLoraAdapter.*mergeLora/);
    expect(fs.existsSync(path.join(tmp, 'full-with-adapters'))).toBe(false);
    const adapterDir = path.join(tmp, 'adapter-not-model');
    await saveLoraAdapter(model, adapterDir);
    await expect(loadModel(adapterDir)).rejects.toThrow(`loadModel ${adapterDir}: this is a PEFT adapter folder (adapter_config.json, no config.json): load its base model, then loadLoraAdapter`);
    const notAdapter = path.join(tmp, 'not-an-adapter');
    fs.mkdirSync(notAdapter, { recursive: true });
    fs.writeFileSync(path.join(notAdapter, 'notes.txt'), 'keep me');
    await expect(saveLoraAdapter(model, notAdapter)).rejects.toThrow(/non-empty folder without adapter_config.json/);
    expect(fs.readFileSync(path.join(notAdapter, 'notes.txt'), 'utf8')).toBe('keep me');
    model.dispose();

    const gpt2 = await loadModel(fixtureDir('gpt2-A'));
    expect(() => addLora(gpt2, { r: 2, alpha: 8, targetModules: ['q_proj', 'v_proj'] }))
      .toThrow(/match no Linear layer of this gpt2 model; its block layers are attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj/);
    gpt2.dispose();
  });

  it('loadLoraAdapter refuses what it does not implement, naming the file and field, and checks every tensor', async () => {
    const model = await loadModel(fixtureDir('llama-A'));
    addLora(model, { r: 2, alpha: 4, targetModules: ['q_proj'] });
    const good = path.join(tmp, 'good');
    await saveLoraAdapter(model, good);
    model.dispose();
    const variant = (name: string, edit: (config: Record<string, unknown>) => void, tensors?: (dir: string) => void) => {
      const dir = path.join(tmp, name);
      fs.cpSync(good, dir, { recursive: true });
      const file = path.join(dir, 'adapter_config.json');
      const config = JSON.parse(fs.readFileSync(file, 'utf8'));
      edit(config);
      fs.writeFileSync(file, JSON.stringify(config));
      tensors?.(dir);
      return dir;
    };
    const attempt = async (dir: string) => {
      const fresh = await loadModel(fixtureDir('llama-A'));
      try {
        return await loadLoraAdapter(fresh, dir);
      } finally {
        expect(getLoraConfig(fresh)).toBeUndefined(); // nothing attached on failure
        fresh.dispose();
      }
    };
    const config = (name: string) => path.join(tmp, name, 'adapter_config.json');
    await expect(attempt(variant('dora', (c) => (c.use_dora = true)))).rejects.toThrow(`loadLoraAdapter ${config('dora')}: \`use_dora\` is true; DoRA`);
    await expect(attempt(variant('bias', (c) => (c.bias = 'all')))).rejects.toThrow(`${config('bias')}: \`bias\` is "all"; only "none" is supported`);
    await expect(attempt(variant('ranks', (c) => (c.rank_pattern = { q_proj: 4 })))).rejects.toThrow('`rank_pattern` is {"q_proj":4}; per-module ranks is not supported');
    await expect(attempt(variant('ia3', (c) => (c.peft_type = 'IA3')))).rejects.toThrow('`peft_type` is "IA3"; only LoRA adapters ("LORA") are supported');
    await expect(attempt(variant('layers', (c) => (c.layers_to_transform = [0])))).rejects.toThrow('`layers_to_transform` is [0]; adapting only some layers is not supported');
    const weights = (name: string) => path.join(tmp, name, 'adapter_model.safetensors');
    await expect(attempt(variant('rank', (c) => (c.r = 3)))).rejects.toThrow(
      `loadLoraAdapter ${weights('rank')}: tensor "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" has shape [2,64], expected [3,64] (r=3 of ${config('rank')}, module "model.layers.0.self_attn.q_proj" of this llama model)`,
    );
    await expect(attempt(variant('more', (c) => (c.target_modules = ['q_proj', 'k_proj'])))).rejects.toThrow(
      `loadLoraAdapter ${weights('more')}: no tensor "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight" (expected shape [2,64]: r=2 and target_modules ["q_proj","k_proj"]`,
    );
    const extra = variant('extra', () => {}, (dir) => {
      const file = path.join(dir, 'adapter_model.safetensors');
      const names = [...readSafetensorsHeader(file).tensors.values()];
      writeSafetensors(file, [
        ...names.map((t) => ({ name: t.name, shape: t.shape, data: new Float32Array(t.shape[0] * t.shape[1]) })),
        { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector', shape: [64], data: new Float32Array(64) },
      ]);
    });
    await expect(attempt(extra)).rejects.toThrow(`${weights('extra')}: tensors this config does not account for: "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"`);
    const missing = path.join(tmp, 'bin-only');
    fs.mkdirSync(missing, { recursive: true });
    fs.copyFileSync(path.join(good, 'adapter_config.json'), path.join(missing, 'adapter_config.json'));
    fs.writeFileSync(path.join(missing, 'adapter_model.bin'), '');
    await expect(attempt(missing)).rejects.toThrow(/no adapter_model.safetensors \(adapter_model.bin, a pickled PyTorch file, is not read/);
    await expect(attempt(path.join(tmp, 'nowhere'))).rejects.toThrow(/no adapter_config.json/);
  });
});
