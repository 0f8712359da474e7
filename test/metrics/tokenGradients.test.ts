// perTokenLossAndGradNorm against a direct computation on a tiny llama: for every example and every
// response token, the loss and the global L2 norm of tf.variableGrads of that single token's loss,
// taken on the whole (unpadded) sequence with a plain log-softmax; the model is left untouched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initEngine } from '../../lib/engine/index.js';
import { tf } from '../../lib/engine/tf.js';
import { createModel, type Decoder } from '../../lib/model/index.js';
import { perTokenLossAndGradNorm, trainingExample, type Target } from '../../lib/metrics/index.js';

let model: Decoder;
let target: Target;

/** Words are token ids written as numbers: "7 8 9" -> [7, 8, 9]; prompts are <s>=1, request, 3 (the "assistant" marker). */
function tinyTarget(m: Decoder): Target {
  const ids = (text: string) => text.split(' ').filter((w) => w !== '').map(Number);
  return {
    name: 'tiny', model: m, promptIds: (request) => [1, ...ids(request), 3], responseIds: ids, decode: (xs) => xs.join(' '),
    eosTokenIds: [2], padTokenId: 0, maxNewTokens: 8,
  };
}

const pairs = [
  { request: '5 9 11', response: '20 21 22 23' },
  { request: '6', response: '24 25' },
  { request: '7 12 13 14', response: '26 27 28' },
];

/** Loss and gradient norm of token p of `ids`, the direct way: full-sequence forward, log-softmax, variableGrads. */
function direct(m: Decoder, ids: number[], p: number): { loss: number; norm: number } {
  const vars = [...m.variables().values()];
  const out = tf.tidy(() => {
    const { value, grads } = tf.variableGrads(() => {
      const { logits } = m.forward(tf.tensor2d([ids], [1, ids.length], 'int32'), { kernels: 'reference' });
      const logp = tf.logSoftmax(tf.squeeze(tf.slice(logits, [0, p - 1, 0], [1, 1, -1]), [0, 1]));
      return tf.neg(tf.gather(logp, ids[p])) as tf.Scalar;
    }, vars);
    let sq = 0;
    for (const v of vars) sq += tf.sum(tf.square(grads[v.name])).dataSync()[0];
    return tf.stack([value, tf.scalar(Math.sqrt(sq))]);
  });
  const [loss, norm] = out.dataSync();
  out.dispose();
  return { loss, norm };
}

beforeAll(async () => {
  await initEngine();
  model = createModel({
    model_type: 'llama', vocab_size: 32, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2,
    num_key_value_heads: 1, max_position_embeddings: 32, initializer_range: 0.2, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0,
  }, { seed: 7 });
  target = tinyTarget(model);
});
afterAll(() => model.dispose());

describe('perTokenLossAndGradNorm', () => {
  it('matches the single-token loss and its variableGrads norm computed directly, and leaves the model unchanged', async () => {
    const before = new Map([...model.variables()].map(([n, v]) => [n, Float32Array.from(v.dataSync() as Float32Array)]));
    const tensors = tf.memory().numTensors;
    const profile = await perTokenLossAndGradNorm(target, pairs, { progress: false });
    expect(tf.memory().numTensors).toBe(tensors);
    for (const [n, v] of model.variables()) expect(Array.from(v.dataSync())).toEqual(Array.from(before.get(n)!));

    // Response positions: the response tokens and the end-of-response token.
    expect(profile.perExample.loss.map((r) => r.length)).toEqual([5, 3, 4]);
    expect(profile.count).toEqual([3, 3, 3, 2, 1]);
    pairs.forEach((pair, i) => {
      const e = trainingExample(target, pair.request, pair.response);
      const positions = e.lossMask.map((m, t) => (m ? t : -1)).filter((t) => t > 0);
      positions.forEach((p, t) => {
        const want = direct(model, e.ids, p);
        expect(want.norm).toBeGreaterThan(0);
        expect(Math.abs(profile.perExample.loss[i][t] - want.loss)).toBeLessThan(1e-4 * Math.max(1, want.loss));
        expect(Math.abs(profile.perExample.gradNorm[i][t] - want.norm)).toBeLessThan(1e-3 * want.norm);
      });
    });
    // Means over the examples that reach each position.
    for (let t = 0; t < profile.loss.length; t++) {
      const rows = profile.perExample.gradNorm.filter((r) => r.length > t).map((r) => r[t]);
      expect(profile.gradNorm[t]).toBeCloseTo(rows.reduce((a, b) => a + b, 0) / rows.length, 5);
    }
    expect(profile.lossStd[4]).toBe(0); // one example reaches position 4
  });

  it('takes training sequences with loss masks; maxTokens truncates; losses-only mode gives the same losses', async () => {
    const seqs = pairs.map((p) => trainingExample(target, p.request, p.response));
    const full = await perTokenLossAndGradNorm(target, pairs, { progress: false });
    const fromSeqs = await perTokenLossAndGradNorm(target, seqs, { progress: false, maxTokens: 2 });
    expect(fromSeqs.perExample.loss).toEqual(full.perExample.loss.map((r) => r.slice(0, 2)));
    expect(fromSeqs.perExample.gradNorm).toEqual(full.perExample.gradNorm.map((r) => r.slice(0, 2)));
    const tensors = tf.memory().numTensors;
    const lossOnly = await perTokenLossAndGradNorm(target, pairs, { progress: false, gradNorm: false, batchSize: 2 });
    expect(tf.memory().numTensors).toBe(tensors);
    expect(lossOnly.gradNorm).toEqual([]);
    lossOnly.perExample.loss.forEach((r, i) => r.forEach((x, t) => expect(Math.abs(x - full.perExample.loss[i][t])).toBeLessThan(1e-4))); // padded batch vs prefix
  });

  it('rejects empty data, bad options and sequences without targets', async () => {
    await expect(perTokenLossAndGradNorm(target, [], { progress: false })).rejects.toThrow('no examples');
    await expect(perTokenLossAndGradNorm(target, pairs, { progress: false, maxTokens: 0 })).rejects.toThrow('`maxTokens` must be a positive integer');
    await expect(perTokenLossAndGradNorm(target, [{ ids: [1, 5, 6], lossMask: [1, 0, 0] }], { progress: false })).rejects.toThrow('no target tokens');
    await expect(perTokenLossAndGradNorm(target, [{ ids: [1, 5, 99], lossMask: [0, 1, 1] }], { progress: false })).rejects.toThrow('ids must be integers in [0, 32)');
  });
});
