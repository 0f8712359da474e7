// Parity with transformers 5.17 (float32, eager attention) on the tiny fixture models: logits,
// hidden states, attentions, top-20 ids, greedy and left-padded greedy generation, and KL between
// two models of the same config.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../lib/engine/tf.js';
import { loadModel, generate, type Decoder } from '../../lib/model/index.js';
import type { LoadedTensor } from '../../lib/io/index.js';
import { FIXTURE_MODELS, fixtureDir, loadExpected, relErr, rows } from './helpers.js';

const TOL = 1e-4;

describe.each(FIXTURE_MODELS)('%s matches transformers', (name) => {
  let model: Decoder;
  let exp: Map<string, LoadedTensor>;
  let tensorsBefore: number;
  beforeAll(async () => {
    tensorsBefore = tf.memory().numTensors;
    model = await loadModel(fixtureDir(name));
    exp = loadExpected(name);
  });
  afterAll(() => {
    model.dispose();
    expect(tf.memory().numTensors).toBe(tensorsBefore);
  });

  it('logits, hidden states, attentions, next-token log-probs, top-20 ids', () => {
    const before = tf.memory().numTensors;
    const ids = rows(exp.get('input_ids')!);
    const out = model.forward(ids, { outputAttentions: true, outputHiddenStates: true });
    const L = model.config.nLayers;
    expect(relErr(out.logits, exp.get('logits')!.data)).toBeLessThan(TOL);
    expect(out.hiddenStates).toHaveLength(L + 1);
    out.hiddenStates!.forEach((h, i) => expect(relErr(h, exp.get(`hidden_states.${i}`)!.data), `hidden_states.${i}`).toBeLessThan(TOL));
    expect(out.attentions).toHaveLength(L);
    out.attentions!.forEach((a, i) => {
      expect(a.shape).toEqual([2, model.config.nHeads, 20, 20]);
      expect(relErr(a, exp.get(`attentions.${i}`)!.data), `attentions.${i}`).toBeLessThan(TOL);
    });

    const [B, T, V] = out.logits.shape;
    const logits = out.logits.dataSync() as Float32Array;
    const refLogits = exp.get('logits')!.data;
    // next-token log-probs (computed here in float64 from our logits)
    const nextRef = exp.get('next_token_logprobs')!.data;
    const next: number[] = [];
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T - 1; t++) {
        const row = logits.subarray((b * T + t) * V, (b * T + t + 1) * V);
        const max = Math.max(...row);
        const lse = max + Math.log(row.reduce((s: number, x: number) => s + Math.exp(x - max), 0));
        next.push(row[ids[b][t + 1]] - lse);
      }
    }
    expect(relErr(next, nextRef)).toBeLessThan(TOL);
    // top-20 ids by logit; a difference is only allowed between exactly tied reference logits
    const top20 = exp.get('top20_ids')!.data;
    for (let p = 0; p < B * T; p++) {
      const row = Array.from(logits.subarray(p * V, (p + 1) * V));
      const ours = row.map((x, i) => [x, i]).sort((a, c) => c[0] - a[0] || a[1] - c[1]).slice(0, 20).map((x) => x[1]);
      for (let j = 0; j < 20; j++) {
        const ref = top20[p * 20 + j];
        if (ours[j] !== ref) expect(refLogits[p * V + ours[j]], `position ${p} rank ${j}`).toBe(refLogits[p * V + ref]);
      }
    }
    out.logits.dispose();
    tf.dispose([...out.hiddenStates!, ...out.attentions!]);
    // without outputAttentions the fused attention runs; and the plain reference compositions
    for (const kernels of ['fused', 'reference'] as const) {
      const plain = model.forward(ids, { kernels });
      expect(relErr(plain.logits, refLogits), kernels).toBeLessThan(TOL);
      plain.logits.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('greedy generation from a 12-token prompt', async () => {
    const ids = rows(exp.get('input_ids')!);
    const g = await generate(model, [ids[0].slice(0, 12)], { maxNewTokens: 8, eosTokenId: null });
    expect(g.sequences).toEqual(rows(exp.get('greedy_prompt12_new8')!));
  });

  it('left-padded batched greedy generation', async () => {
    const before = tf.memory().numTensors;
    const g = await generate(model, rows(exp.get('leftpad_input_ids')!), {
      maxNewTokens: 8,
      eosTokenId: null,
      attentionMask: rows(exp.get('leftpad_attention_mask')!),
    });
    expect(g.newTokens).toEqual(rows(exp.get('leftpad_greedy_new8')!));
    expect(g.sequences.map((s) => s.slice(12))).toEqual(rows(exp.get('leftpad_greedy_new8')!));
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe.each(['llama-A', 'qwen2-A'])('%s vs %s-other: KL(this || other) per position', (name) => {
  it('matches transformers', async () => {
    const a = await loadModel(fixtureDir(name));
    const b = await loadModel(fixtureDir(`${name}-other`));
    const exp = loadExpected(name);
    const ids = rows(exp.get('input_ids')!);
    const kl = tf.tidy(() => {
      const lp = tf.logSoftmax(a.forward(ids).logits);
      const lq = tf.logSoftmax(b.forward(ids).logits);
      return tf.sum(tf.mul(tf.exp(lp), tf.sub(lp, lq)), -1);
    });
    expect(kl.shape).toEqual([2, 20]);
    expect(relErr(kl, exp.get('kl_this_vs_other')!.data)).toBeLessThan(TOL);
    kl.dispose();
    a.dispose();
    b.dispose();
  });
});
