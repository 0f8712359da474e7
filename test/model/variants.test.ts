// Variants beyond the fixtures (tied embeddings, GQA ratios 1 and 4, Llama-3 rope scaling,
// sliding windows, soft-caps, gemma3 local/global layers, gpt2 options): internal consistency
// (KV cache vs full pass with left padding, shapes, save/load through the transformers spelling),
// plus exact checks of rope scaling, window semantics, GQA head mapping, inputsEmbeds and gradients.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { afterAll, describe, expect, it } from 'vitest';
import { tf } from '../../lib/engine/tf.js';
import { fromHF, type ModelConfig } from '../../lib/io/index.js';
import { createModel, loadModel, ropeInvFreq, saveModel, type Decoder, type KVCache } from '../../lib/model/index.js';
import { relErr } from './helpers.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'deepalign-variants-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const base = { vocab_size: 40, hidden_size: 32, intermediate_size: 40, num_hidden_layers: 2, max_position_embeddings: 64, rms_norm_eps: 1e-6, initializer_range: 0.2, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 };
const VARIANTS: Record<string, Record<string, unknown>> = {
  'llama tied, GQA 4': { ...base, model_type: 'llama', num_attention_heads: 8, num_key_value_heads: 2, head_dim: 8, tie_word_embeddings: true },
  'llama MHA, llama3 rope, biases': {
    ...base, model_type: 'llama', num_attention_heads: 4, num_key_value_heads: 4, attention_bias: true, mlp_bias: true,
    rope_theta: 500000, rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 16 },
  },
  'qwen3 GQA 1': { ...base, model_type: 'qwen3', num_attention_heads: 4, num_key_value_heads: 4, head_dim: 8, rope_theta: 1e6 },
  'qwen2 GQA 4': { ...base, model_type: 'qwen2', num_attention_heads: 4, num_key_value_heads: 1, tie_word_embeddings: true },
  'mistral sliding 4': { ...base, model_type: 'mistral', num_attention_heads: 4, num_key_value_heads: 2, sliding_window: 4 },
  'gemma MHA': { ...base, model_type: 'gemma', num_attention_heads: 4, num_key_value_heads: 4, head_dim: 8 },
  'gemma2 strong softcaps': {
    ...base, model_type: 'gemma2', num_hidden_layers: 3, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8,
    sliding_window: 4, query_pre_attn_scalar: 12, attn_logit_softcapping: 2.0, final_logit_softcapping: 1.5,
  },
  'gemma3 pattern 2, linear rope on global layers': {
    ...base, model_type: 'gemma3_text', num_hidden_layers: 4, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8,
    sliding_window: 3, sliding_window_pattern: 2, rope_theta: 1e6, rope_local_base_freq: 10000, rope_scaling: { rope_type: 'linear', factor: 4 }, query_pre_attn_scalar: 8,
  },
  'gpt2 inverse-layer scaling': { model_type: 'gpt2', vocab_size: 40, n_embd: 32, n_layer: 2, n_head: 4, n_positions: 64, scale_attn_by_inverse_layer_idx: true, initializer_range: 0.2 },
};

// row 1 is left-padded by 3
const IDS = [
  [1, 5, 9, 33, 2, 7, 11, 13, 17, 19, 23, 29],
  [0, 0, 0, 1, 8, 6, 30, 31, 4, 3, 39, 38],
];
const MASK = [Array(12).fill(1), [0, 0, 0, ...Array(9).fill(1)]];
const POS = MASK.map((row) => {
  let c = 0;
  return row.map((m) => (m ? c++ : 1));
});

/** Logits for every position by prefill(5) + one token at a time through the KV cache. */
function incrementalLogits(model: Decoder): Float32Array[] {
  const out: Float32Array[] = [];
  let cache: KVCache | undefined;
  for (let t = 0; t < 12; ) {
    const n = t === 0 ? 5 : 1;
    const r = model.forward(IDS.map((row) => row.slice(t, t + n)), {
      attentionMask: MASK.map((row) => row.slice(0, t + n)),
      positionIds: POS.map((row) => row.slice(t, t + n)),
      cache,
      useCache: true,
    });
    if (cache) tf.dispose([...cache.keys, ...cache.values]);
    cache = r.cache;
    const data = r.logits.dataSync() as Float32Array;
    const V = r.logits.shape[2];
    for (let j = 0; j < n; j++) out.push(Float32Array.from([...data.subarray(j * V, (j + 1) * V), ...data.subarray((n + j) * V, (n + j + 1) * V)]));
    r.logits.dispose();
    t += n;
  }
  tf.dispose([...cache!.keys, ...cache!.values]);
  return out;
}

describe.each(Object.keys(VARIANTS))('%s', (name) => {
  const hf = VARIANTS[name];
  it('forward shapes, probabilities, KV cache == full pass (with left padding), save/load', async () => {
    const before = tf.memory().numTensors;
    const model = createModel(hf, { seed: 11 });
    const cfg = model.config;
    const full = model.forward(IDS, { attentionMask: MASK, positionIds: POS, outputAttentions: true, outputHiddenStates: true });
    expect(full.logits.shape).toEqual([2, 12, cfg.vocabSize]);
    expect(full.hiddenStates).toHaveLength(cfg.nLayers + 1);
    expect(full.attentions![0].shape).toEqual([2, cfg.nHeads, 12, 12]);
    const rowSums = tf.tidy(() => tf.sum(full.attentions![cfg.nLayers - 1], -1));
    expect(relErr(rowSums, new Float32Array(2 * cfg.nHeads * 12).fill(1))).toBeLessThan(1e-5);
    rowSums.dispose();

    // cache == no cache at every non-padded position
    const inc = incrementalLogits(model);
    const V = cfg.vocabSize;
    const fullData = full.logits.dataSync();
    for (let t = 0; t < 12; t++) {
      for (let b = 0; b < 2; b++) {
        if (!MASK[b][t]) continue;
        const ref = fullData.subarray((b * 12 + t) * V, (b * 12 + t + 1) * V);
        expect(relErr(inc[t].subarray(b * V, (b + 1) * V), ref), `row ${b} position ${t}`).toBeLessThan(1e-5);
      }
    }

    // save through the transformers spelling generated from ModelConfig (no raw json kept)
    const { hf: _raw, ...plain } = cfg;
    const fromConfig = createModel(plain as ModelConfig, { seed: 11 });
    const dir = path.join(tmp, name.replace(/[^a-z0-9]+/gi, '_'));
    await saveModel(fromConfig, dir);
    const reloaded = await loadModel(dir);
    expect({ ...reloaded.config, hf: undefined }).toEqual({ ...plain, hf: undefined });
    const again = reloaded.forward(IDS, { attentionMask: MASK, positionIds: POS, outputAttentions: true });
    expect(Array.from(again.logits.dataSync())).toEqual(Array.from(fullData));

    tf.dispose([full.logits, ...full.hiddenStates!, ...full.attentions!, again.logits, ...again.attentions!]);
    model.dispose();
    fromConfig.dispose();
    reloaded.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('fused vs reference kernels', () => {
  it.each(['llama tied, GQA 4', 'qwen3 GQA 1', 'gemma2 strong softcaps', 'gemma3 pattern 2, linear rope on global layers', 'mistral sliding 4'])(
    '%s: same logits and gradients',
    (name) => {
      const model = createModel(VARIANTS[name], { seed: 8 });
      const vars = [...model.variables().values()];
      const run = (kernels: 'fused' | 'reference') =>
        tf.variableGrads(() => tf.sum(tf.mul(tf.logSoftmax(model.forward(IDS, { attentionMask: MASK, positionIds: POS, kernels }).logits), 0.01)) as tf.Scalar, vars);
      const fused = run('fused');
      const ref = run('reference');
      expect(Math.abs(fused.value.dataSync()[0] - ref.value.dataSync()[0]) / Math.abs(ref.value.dataSync()[0])).toBeLessThan(1e-5);
      for (const v of vars) expect(relErr(fused.grads[v.name], ref.grads[v.name].dataSync()), v.name).toBeLessThan(1e-4);
      tf.dispose([fused.value, ref.value, ...Object.values(fused.grads), ...Object.values(ref.grads)]);
      model.dispose();
    },
  );
});

describe('rope', () => {
  it('llama3 scaling matches _compute_llama3_parameters (Llama-3.1 8B settings)', () => {
    const dh = 128;
    const theta = 500000;
    const [factor, low, high, old] = [8, 1, 4, 8192];
    const inv = ropeInvFreq({ theta, type: 'llama3', factor, lowFreqFactor: low, highFreqFactor: high, originalMaxPositions: old }, dh);
    // transcription of the python, vectorised the same way: where(wavelen > low_wavelen, f/factor, f),
    // then smoothed values where neither high nor low frequency
    const lowWavelen = old / low;
    const highWavelen = old / high;
    let bands = { high: 0, low: 0, medium: 0 };
    for (let i = 0; i < dh / 2; i++) {
      const f = 1 / Math.fround(theta ** Math.fround((2 * i) / dh));
      const wavelen = (2 * Math.PI) / f;
      let expected = wavelen > lowWavelen ? f / factor : f;
      const smooth = (old / wavelen - low) / (high - low);
      const isMedium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      if (isMedium) expected = ((1 - smooth) * expected) / factor + smooth * expected;
      expect(inv[i] / expected, `inv_freq[${i}]`).toBeCloseTo(1, 6);
      if (wavelen < highWavelen) bands.high++;
      else if (wavelen > lowWavelen) bands.low++;
      else bands.medium++;
    }
    // all three bands are exercised
    expect(bands.high).toBeGreaterThan(0);
    expect(bands.low).toBeGreaterThan(0);
    expect(bands.medium).toBeGreaterThan(0);
    expect(inv[0]).toBe(1);
    expect(inv[63] / (theta ** (-126 / 128) / 8)).toBeCloseTo(1, 5);
  });

  it('linear scaling divides every frequency', () => {
    const a = ropeInvFreq({ theta: 10000, type: 'default' }, 16);
    const b = ropeInvFreq({ theta: 10000, type: 'linear', factor: 4 }, 16);
    a.forEach((x, i) => expect(b[i]).toBeCloseTo(x / 4, 7));
  });
});

describe('attention semantics', () => {
  it('a sliding window of W lets position q see keys q-W+1..q only', () => {
    // one layer, so only attention can carry information between positions
    const model = createModel({ ...VARIANTS['mistral sliding 4'], num_hidden_layers: 1 }, { seed: 2 });
    const seq = [1, 5, 9, 33, 2, 7, 11, 13, 17, 19];
    const q = 9;
    const logitsAt = (ids: number[]) => tf.tidy(() => model.forward([ids]).logits.slice([0, q, 0], [1, 1, -1]).dataSync());
    const ref = logitsAt(seq);
    const changeAt = (k: number) => seq.map((x, i) => (i === k ? (x + 1) % 40 : x));
    expect(Array.from(logitsAt(changeAt(q - 4)))).toEqual(Array.from(ref)); // outside: q - W
    expect(Array.from(logitsAt(changeAt(q - 3)))).not.toEqual(Array.from(ref)); // inside: q - W + 1
    model.dispose();
  });

  it('GQA reads KV head floor(h / g): equal to the MHA model with repeated K/V weights', () => {
    const gqa = createModel(VARIANTS['llama tied, GQA 4'], { seed: 5 });
    const mhaConfig = { ...VARIANTS['llama tied, GQA 4'], num_key_value_heads: 8 };
    const mha = createModel(mhaConfig, { seed: 6 });
    for (const [name, v] of gqa.variables()) {
      const target = mha.variables().get(name)!;
      if (/\.(k|v)_proj\.weight$/.test(name)) {
        // [2*dh, D] -> [8*dh, D]: kv head j serves query heads 4j..4j+3
        const heads = tf.split(v, 2, 0);
        const repeated = tf.concat(heads.flatMap((h) => [h, h, h, h]), 0);
        target.assign(repeated);
        tf.dispose([...heads, repeated]);
      } else {
        target.assign(v);
      }
    }
    const a = gqa.forward(IDS, { attentionMask: MASK });
    const b = mha.forward(IDS, { attentionMask: MASK });
    expect(relErr(a.logits, b.logits.dataSync())).toBeLessThan(1e-6);
    tf.dispose([a.logits, b.logits]);
    gqa.dispose();
    mha.dispose();
  });

  it('inputsEmbeds = embedding rows gives the same logits (gemma scale and gpt2 positions applied inside)', () => {
    for (const name of ['gemma MHA', 'gpt2 inverse-layer scaling']) {
      const model = createModel(VARIANTS[name], { seed: 1 });
      const emb = model.embed(IDS);
      // (row 1 is left-padded: forward without the mask would refuse it)
      const a = model.forward(IDS, { attentionMask: MASK, positionIds: POS });
      const b = model.forward(null, { inputsEmbeds: emb, attentionMask: MASK, positionIds: POS });
      expect(Array.from(b.logits.dataSync())).toEqual(Array.from(a.logits.dataSync()));
      tf.dispose([emb, a.logits, b.logits]);
      model.dispose();
    }
  });
});

describe('gradients', () => {
  const model = createModel(VARIANTS['gemma2 strong softcaps'], { seed: 9 });
  afterAll(() => model.dispose());
  // No pad ids here: the pad row of the embedding is zero, and RMSNorm's gradient at an exactly
  // zero input is 1/sqrt(eps) (as in torch), which would swamp these checks.
  const TOKENS = IDS.map((r) => r.map((x) => x || 3));
  const target = tf.tensor2d(TOKENS.map((r) => [...r.slice(1), 2]), [2, 12], 'int32');

  /** mean next-token cross-entropy */
  function loss(logits: tf.Tensor3D): tf.Scalar {
    const labels = tf.oneHot(target, logits.shape[2]).toFloat();
    return tf.neg(tf.mean(tf.sum(tf.mul(labels, tf.logSoftmax(logits)), -1))) as tf.Scalar;
  }

  it('flow to every weight, and through the attention probabilities', () => {
    const vars = [...model.variables().values()];
    const { value, grads } = tf.variableGrads(() => loss(model.forward(TOKENS).logits), vars);
    expect(Object.keys(grads)).toHaveLength(vars.length);
    for (const v of vars) {
      const norm = tf.tidy(() => tf.norm(grads[v.name]).dataSync()[0]);
      expect(Number.isFinite(norm) && norm > 0, v.name).toBe(true);
    }
    // a loss on attentions alone (PRESTO regularises them) reaches the q/k projections
    const q = model.variables().get('model.layers.0.self_attn.q_proj.weight')!;
    const g = tf.variableGrads(() => tf.sum(tf.square(model.forward(TOKENS, { outputAttentions: true }).attentions![1])) as tf.Scalar, [q]);
    expect(tf.tidy(() => tf.norm(g.grads[q.name]).dataSync()[0])).toBeGreaterThan(0);
    tf.dispose([value, ...Object.values(grads), g.value, ...Object.values(g.grads)]);
  });

  it('with respect to one-hot tokens (GCG) match a finite difference', () => {
    const W = model.embeddingMatrix();
    const oneHot = tf.oneHot(tf.tensor2d(TOKENS, [2, 12], 'int32'), model.config.vocabSize).toFloat() as tf.Tensor3D;
    const f = (x: tf.Tensor3D) => loss(model.forward(null, { inputsEmbeds: tf.matMul(x.reshape([24, -1]), W).reshape([2, 12, -1]) as tf.Tensor3D }).logits);
    const grad = tf.grad((x: tf.Tensor) => f(x as tf.Tensor3D))(oneHot);
    const raw = tf.randomNormal(oneHot.shape, 0, 1, 'float32', 3);
    const dir = tf.div(raw, tf.norm(raw)); // unit direction
    raw.dispose();
    const eps = 1e-2;
    const fd = tf.tidy(() => (f(tf.add(oneHot, tf.mul(dir, eps)) as tf.Tensor3D).dataSync()[0] - f(tf.sub(oneHot, tf.mul(dir, eps)) as tf.Tensor3D).dataSync()[0]) / (2 * eps));
    const analytic = tf.tidy(() => tf.sum(tf.mul(grad, dir)).dataSync()[0]);
    expect(Math.abs(fd - analytic) / Math.abs(analytic)).toBeLessThan(0.02);
    tf.dispose([oneHot, grad, dir]);
  });

  it('a few Adam steps lower the loss', () => {
    const small = createModel(VARIANTS['llama tied, GQA 4'], { seed: 4 });
    const opt = tf.train.adam(1e-2);
    const vars = [...small.variables().values()];
    const losses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const l = opt.minimize(() => loss(small.forward(TOKENS).logits), true, vars)!;
      losses.push(l.dataSync()[0]);
      l.dispose();
    }
    expect(losses[4]).toBeLessThan(losses[0]);
    opt.dispose();
    small.dispose();
  });
});

describe('createModel', () => {
  it('is deterministic given the seed and follows transformers init', () => {
    const a = createModel(VARIANTS['llama tied, GQA 4'], { seed: 1 });
    const b = createModel(VARIANTS['llama tied, GQA 4'], { seed: 1 });
    const c = createModel(VARIANTS['llama tied, GQA 4'], { seed: 2 });
    const name = 'model.layers.0.mlp.up_proj.weight';
    const va = a.variables().get(name)!.dataSync() as Float32Array;
    expect(Array.from(b.variables().get(name)!.dataSync())).toEqual(Array.from(va));
    expect(Array.from(c.variables().get(name)!.dataSync())).not.toEqual(Array.from(va));
    const mean = va.reduce((s, x) => s + x, 0) / va.length;
    const std = Math.sqrt(va.reduce((s, x) => s + (x - mean) ** 2, 0) / va.length);
    expect(std).toBeGreaterThan(0.18);
    expect(std).toBeLessThan(0.22);
    expect(Array.from(a.variables().get('model.norm.weight')!.dataSync()).every((x) => x === 1)).toBe(true);
    // the pad row of the embedding is zero
    expect(Array.from(a.embeddingMatrix().dataSync().subarray(0, 32)).every((x) => x === 0)).toBe(true);
    // gemma stores (1 + w) norms as zeros
    const g = createModel(VARIANTS['gemma MHA'], { seed: 1 });
    expect(Array.from(g.variables().get('model.layers.0.input_layernorm.weight')!.dataSync()).every((x) => x === 0)).toBe(true);
    // a ModelConfig works as well as HF json
    const fromCfg = createModel(fromHF(VARIANTS['llama tied, GQA 4']), { seed: 1 });
    expect(Array.from(fromCfg.variables().get(name)!.dataSync())).toEqual(Array.from(va));
    [a, b, c, g, fromCfg].forEach((m) => m.dispose());
  });
});

describe('attention implementations', () => {
  it('a registered implementation is used by name; a naive repeat-KV version agrees with eager', async () => {
    const { registerAttention } = await import('../../lib/model/index.js');
    let calls = 0;
    // textbook attention: materialise repeated K/V heads, then softmax(q k^T * scale + mask) v
    registerAttention('naive-test', (q, k, v, mask, opts) => {
      calls++;
      const g = q.shape[1]! / k.shape[1]!;
      const rep = (x: tf.Tensor) => tf.concat(tf.split(x, x.shape[1]!, 1).flatMap((h) => Array(g).fill(h)), 1);
      let scores = tf.mul(tf.matMul(q, rep(k), false, true), opts.scale);
      if (opts.softcap !== undefined) scores = tf.mul(tf.tanh(tf.div(scores, opts.softcap)), opts.softcap);
      if (mask) scores = tf.add(scores, mask);
      const probs = tf.softmax(scores);
      return { output: tf.matMul(probs, rep(v)), probs };
    });
    const model = createModel(VARIANTS['gemma2 strong softcaps'], { seed: 3 });
    const eager = model.forward(IDS, { attentionMask: MASK, outputAttentions: true });
    const naive = model.forward(IDS, { attentionMask: MASK, outputAttentions: true, attnImplementation: 'naive-test' });
    expect(calls).toBe(model.config.nLayers);
    expect(relErr(naive.logits, eager.logits.dataSync())).toBeLessThan(1e-5);
    expect(relErr(naive.attentions![0], eager.attentions![0].dataSync())).toBeLessThan(1e-5);
    expect(() => model.forward(IDS, { attentionMask: MASK, attnImplementation: 'flash' })).toThrow('forward: unknown attention implementation "flash"; registered: eager, naive-test');
    tf.dispose([eager.logits, naive.logits, ...eager.attentions!, ...naive.attentions!]);
    model.dispose();
  });
});
