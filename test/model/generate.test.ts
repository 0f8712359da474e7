// Generation: KV cache vs full recomputation, seeded sampling, processors against hand-computed
// values, prefilling, the chooser callback, per-step top-k ranks, EOS / stop strings, leaks.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../lib/engine/tf.js';
import { generate, loadModel, minPProcessor, temperatureProcessor, topKProcessor, topPProcessor, type Decoder } from '../../lib/model/index.js';
import { fixtureDir, loadExpected, rows } from './helpers.js';

let llama: Decoder;
let gemma2: Decoder;
let prompt: number[][];
let leftPadded: number[][];
let leftMask: number[][];
beforeAll(async () => {
  llama = await loadModel(fixtureDir('llama-A'));
  gemma2 = await loadModel(fixtureDir('gemma2-A'));
  const exp = loadExpected('llama-A');
  prompt = rows(exp.get('input_ids')!).map((r) => r.slice(0, 10));
  leftPadded = rows(exp.get('leftpad_input_ids')!);
  leftMask = rows(exp.get('leftpad_attention_mask')!);
});
afterAll(() => {
  llama.dispose();
  gemma2.dispose();
});

/** log_softmax of the last-position logits of `seq`, by a plain forward pass. */
function lastLogprobs(model: Decoder, seq: number[]): Float64Array {
  const logits = tf.tidy(() => model.forward([seq]).logits.slice([0, seq.length - 1, 0], [1, 1, -1]));
  const row = logits.dataSync() as Float32Array;
  logits.dispose();
  const max = Math.max(...row);
  const lse = max + Math.log(row.reduce((s: number, x: number) => s + Math.exp(x - max), 0));
  return Float64Array.from(row, (x) => x - lse);
}

describe('KV cache', () => {
  it.each([
    ['greedy', { doSample: false }],
    ['sampling with temperature/top-k/top-p/min-p', { doSample: true, temperature: 0.8, topK: 50, topP: 0.95, minP: 0.01, seed: 7 }],
  ])('gives the same tokens as recomputation (%s), across gemma2 sliding windows and left padding', async (_n, opts) => {
    for (const model of [llama, gemma2]) {
      // 12-token prompts + 14 new tokens run well past gemma2-A's sliding window of 8
      const withCache = await generate(model, leftPadded, { ...opts, attentionMask: leftMask, maxNewTokens: 14, eosTokenId: null });
      const without = await generate(model, leftPadded, { ...opts, attentionMask: leftMask, maxNewTokens: 14, eosTokenId: null, useCache: false });
      expect(withCache.sequences).toEqual(without.sequences);
    }
  });

  it('does not leak tensors across steps', async () => {
    const before = tf.memory().numTensors;
    await generate(llama, prompt, { maxNewTokens: 6, doSample: true, seed: 1, returnTopK: 3 });
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('sampling', () => {
  it('same seed gives the same tokens; other seeds give others', async () => {
    const opts = { doSample: true, temperature: 1.5, maxNewTokens: 12, eosTokenId: null };
    const a = await generate(llama, prompt, { ...opts, seed: 123 });
    const b = await generate(llama, prompt, { ...opts, seed: 123 });
    const c = await generate(llama, prompt, { ...opts, seed: 124 });
    expect(a.sequences).toEqual(b.sequences);
    expect(a.sequences).not.toEqual(c.sequences);
  });

  it('topK: 1 is greedy', async () => {
    const greedy = await generate(llama, prompt, { maxNewTokens: 6, eosTokenId: null });
    const topk1 = await generate(llama, prompt, { maxNewTokens: 6, eosTokenId: null, doSample: true, topK: 1, seed: 5 });
    expect(topk1.sequences).toEqual(greedy.sequences);
  });
});

describe('logits processors (hand-computed)', () => {
  const logits = Float32Array.from([2, 1, 0, -1, 3]);
  // softmax([2,1,0,-1,3]) = [0.2369, 0.0871, 0.0321, 0.0118, 0.6439]

  it('temperature divides', () => {
    expect(Array.from(temperatureProcessor(2)(logits))).toEqual([1, 0.5, 0, -0.5, 1.5]);
  });
  it('top-k keeps the k largest', () => {
    expect(Array.from(topKProcessor(2)(logits))).toEqual([2, -Infinity, -Infinity, -Infinity, 3]);
  });
  it('top-p keeps the smallest prefix reaching p', () => {
    // 0.6439 < 0.8 <= 0.6439 + 0.2369
    expect(Array.from(topPProcessor(0.8)(logits))).toEqual([2, -Infinity, -Infinity, -Infinity, 3]);
    expect(Array.from(topPProcessor(0.6)(logits))).toEqual([-Infinity, -Infinity, -Infinity, -Infinity, 3]);
    // 0.9680 needs the third token
    expect(Array.from(topPProcessor(0.95)(logits))).toEqual([2, 1, -Infinity, -Infinity, 3]);
  });
  it('min-p drops tokens below minP * p(top)', () => {
    // cut = 0.1 * 0.6439 = 0.0644: keeps 0.2369 and 0.0871
    expect(Array.from(minPProcessor(0.1)(logits))).toEqual([2, 1, -Infinity, -Infinity, 3]);
  });
  it('validate their arguments', () => {
    expect(() => topPProcessor(1.5)).toThrow('`top_p` must be in (0, 1], got 1.5');
    expect(() => topKProcessor(0)).toThrow('`top_k` must be a positive integer, got 0');
    expect(() => temperatureProcessor(0)).toThrow(/`temperature` must be a finite number > 0, got 0/);
    expect(() => minPProcessor(-0.1)).toThrow('`min_p` must be in [0, 1], got -0.1');
  });
  it('are validated by generate', async () => {
    await expect(generate(llama, prompt, { doSample: true, topP: 1.5 })).rejects.toThrow('`top_p` must be in (0, 1], got 1.5');
  });
});

describe('prefill, top-k records and chooser', () => {
  it('a forced prefix is the same as appending it to the prompt; its steps carry model log-probs and ranks', async () => {
    const prefix = [7, 8, 9];
    const g = await generate(llama, [prompt[0]], { prefill: prefix, maxNewTokens: 5, eosTokenId: null, returnTopK: 4 });
    const ref = await generate(llama, [[...prompt[0], ...prefix]], { maxNewTokens: 5, eosTokenId: null });
    expect(g.sequences).toEqual(ref.sequences);
    expect(g.newTokens[0].slice(0, 3)).toEqual(prefix);
    const steps = g.steps![0];
    expect(steps).toHaveLength(8);
    prefix.forEach((id, j) => {
      const lp = lastLogprobs(llama, [...prompt[0], ...prefix.slice(0, j)]);
      expect(steps[j].forced).toBe(true);
      expect(steps[j].chosen.id).toBe(id);
      expect(steps[j].chosen.logprob).toBeCloseTo(lp[id], 4);
      expect(steps[j].chosen.rank).toBe(1 + Array.from(lp).filter((x) => x > lp[id]).length);
    });
  });

  it('prefixes of different lengths per row give each row what it gets alone', async () => {
    const prefixes = [[7, 8, 9], [21]];
    const batched = await generate(llama, prompt, { prefill: prefixes, maxNewTokens: 5, eosTokenId: null, returnTopK: 3 });
    for (let b = 0; b < 2; b++) {
      const alone = await generate(llama, [prompt[b]], { prefill: prefixes[b], maxNewTokens: 5, eosTokenId: null, returnTopK: 3 });
      expect(batched.newTokens[b]).toEqual(alone.newTokens[0]);
      expect(batched.steps![b].map((st) => st.chosen.rank)).toEqual(alone.steps![0].map((st) => st.chosen.rank));
      batched.steps![b].forEach((st, t) => expect(st.chosen.logprob).toBeCloseTo(alone.steps![0][t].chosen.logprob, 4));
    }
    // the shorter prefix is left-padded so the rows stay rectangular
    expect(batched.sequences[1].slice(0, 2)).toEqual([0, 0]);
    expect(batched.sequences[0].length).toBe(batched.sequences[1].length);
  });

  it('top-k candidates are sorted with ranks 1..k and match a plain forward pass', async () => {
    const g = await generate(llama, [prompt[1]], { maxNewTokens: 3, eosTokenId: null, returnTopK: 5 });
    const seq = g.sequences[0];
    g.steps![0].forEach((step, t) => {
      const lp = lastLogprobs(llama, seq.slice(0, prompt[1].length + t));
      const order = Array.from(lp).map((x, i) => [x, i]).sort((a, b) => b[0] - a[0]).slice(0, 5);
      expect(step.candidates.map((c) => c.id)).toEqual(order.map((o) => o[1]));
      expect(step.candidates.map((c) => c.rank)).toEqual([1, 2, 3, 4, 5]);
      step.candidates.forEach((c) => expect(c.logprob).toBeCloseTo(lp[c.id], 4));
      expect(step.chosen.rank).toBe(1); // greedy
    });
  });

  it('a chooser can pick any candidate and generation continues from it', async () => {
    const seen: number[] = [];
    const g = await generate(llama, prompt, {
      maxNewTokens: 4,
      eosTokenId: null,
      chooser: (s) => {
        seen.push(s.row);
        expect(s.tokens).toHaveLength(prompt[s.row].length + s.step);
        return s.candidates[1].id; // always the second most likely
      },
    });
    expect(seen).toEqual([0, 1, 0, 1, 0, 1, 0, 1]);
    for (let b = 0; b < 2; b++) {
      g.steps![b].forEach((s) => expect(s.chosen.rank).toBe(2));
      // replay without the chooser: the chosen token is rank 2 in a fresh forward pass
      for (let t = 0; t < 4; t++) {
        const lp = lastLogprobs(llama, g.sequences[b].slice(0, prompt[b].length + t));
        const id = g.sequences[b][prompt[b].length + t];
        expect(1 + Array.from(lp).filter((x) => x > lp[id]).length).toBe(2);
      }
    }
  });
});

describe('stopping', () => {
  it('stops a row at EOS and pads it while the other row continues', async () => {
    const free = await generate(llama, prompt, { maxNewTokens: 6, eosTokenId: null });
    const eos = free.newTokens[0][2]; // make row 0's third token the EOS
    const g = await generate(llama, prompt, { maxNewTokens: 6, eosTokenId: eos, padTokenId: 0 });
    expect(g.newTokens[0]).toEqual(free.newTokens[0].slice(0, 3));
    expect(g.finishReason[0]).toBe('eos');
    const tail = g.sequences[0].slice(prompt[0].length);
    expect(tail.slice(0, 3)).toEqual(free.newTokens[0].slice(0, 3));
    expect(tail.slice(3).every((t) => t === 0)).toBe(true);
    expect(g.sequences[0].length).toBe(g.sequences[1].length);
  });

  it('stops at a stop string', async () => {
    const free = await generate(llama, [prompt[0]], { maxNewTokens: 6, eosTokenId: null });
    const tokenizer = { decode: (ids: number[]) => ids.map((i) => `<${i}>`).join('') };
    const stop = `<${free.newTokens[0][1]}>`;
    const g = await generate(llama, [prompt[0]], { maxNewTokens: 6, eosTokenId: null, stopStrings: [stop], tokenizer });
    const firstAt = free.newTokens[0].findIndex((t) => `<${t}>` === stop);
    expect(g.newTokens[0]).toEqual(free.newTokens[0].slice(0, firstAt + 1));
    expect(g.finishReason[0]).toBe('stop_string');
  });

  it('a stop string may begin in the forced prefix and end in generated text, but not lie inside the prefix', async () => {
    const tokenizer = { decode: (ids: number[]) => ids.map((i) => `<${i}>`).join('') };
    const prefill = [prompt[0][3], prompt[0][4]];
    const free = await generate(llama, [prompt[0]], { maxNewTokens: 6, eosTokenId: null, prefill });
    const firstFree = free.newTokens[0][2];
    // spans the prefix's last token and the first generated token: stops right there
    const spanning = await generate(llama, [prompt[0]], { maxNewTokens: 6, eosTokenId: null, prefill, stopStrings: [`<${prefill[1]}><${firstFree}>`], tokenizer });
    expect(spanning.newTokens[0]).toEqual([...prefill, firstFree]);
    expect(spanning.finishReason[0]).toBe('stop_string');
    // wholly inside the prefix: ignored
    const inside = await generate(llama, [prompt[0]], { maxNewTokens: 6, eosTokenId: null, prefill, stopStrings: [`<${prefill[0]}><${prefill[1]}>`], tokenizer });
    expect(inside.newTokens[0]).toEqual(free.newTokens[0]);
  });
});

describe('attention mask inference', () => {
  it('without a mask, pad ids in the prompt are masked as transformers does', async () => {
    const explicit = await generate(llama, leftPadded, { maxNewTokens: 5, eosTokenId: null, attentionMask: leftMask });
    const inferred = await generate(llama, leftPadded, { maxNewTokens: 5, eosTokenId: null });
    expect(inferred.sequences).toEqual(explicit.sequences);
    // with pad == eos transformers infers nothing and attends the pads; here rows starting with
    // different numbers of pad/eos ids are an error (left padding that cannot be told from real
    // eos tokens), and a mask says which it is: all ones attends them
    await expect(generate(llama, leftPadded, { maxNewTokens: 5, eosTokenId: 0, padTokenId: 0 })).rejects.toThrow(/starts with 5 pad ids \(0, also an eos id\)/);
    const allOnes = await generate(llama, leftPadded, { maxNewTokens: 5, eosTokenId: 0, padTokenId: 0, attentionMask: leftMask.map((r) => r.map(() => 1)) });
    expect(allOnes.sequences[1].slice(0, 5)).toEqual([0, 0, 0, 0, 0]);
  });
});

describe('generation_config.json defaults', () => {
  it('are read by loadModel and give generate its eos id', async () => {
    expect(llama.generationConfig).toMatchObject({ bos_token_id: 1, eos_token_id: 2, pad_token_id: 0 });
    const free = await generate(llama, [prompt[0]], { maxNewTokens: 6, eosTokenId: null });
    const saved = llama.generationConfig;
    try {
      llama.generationConfig = { ...saved, eos_token_id: [free.newTokens[0][1]] };
      const g = await generate(llama, [prompt[0]], { maxNewTokens: 6 });
      expect(g.newTokens[0]).toEqual(free.newTokens[0].slice(0, free.newTokens[0].indexOf(free.newTokens[0][1]) + 1));
      expect(g.finishReason[0]).toBe('eos');
    } finally {
      llama.generationConfig = saved;
    }
  });
});

describe('generation_config.json defaults', () => {
  it('sampling settings the caller leaves out come from generation_config.json; explicit options win', async () => {
    const saved = llama.generationConfig;
    try {
      llama.generationConfig = { ...saved, do_sample: true, temperature: 1.7, top_k: 7, top_p: 0.9 };
      const fromFile = await generate(llama, prompt, { maxNewTokens: 6, seed: 5, eosTokenId: null });
      llama.generationConfig = saved;
      const explicit = await generate(llama, prompt, { maxNewTokens: 6, seed: 5, eosTokenId: null, doSample: true, temperature: 1.7, topK: 7, topP: 0.9 });
      expect(fromFile.sequences).toEqual(explicit.sequences);
      const greedy = await generate(llama, prompt, { maxNewTokens: 6, eosTokenId: null });
      expect(fromFile.sequences).not.toEqual(greedy.sequences);
      llama.generationConfig = { ...saved, do_sample: true, temperature: 1.7 };
      const forcedGreedy = await generate(llama, prompt, { maxNewTokens: 6, eosTokenId: null, doSample: false });
      expect(forcedGreedy.sequences).toEqual(greedy.sequences);
    } finally {
      llama.generationConfig = saved;
    }
  });
});
