// Input checks at every public entry point (lib/model/inputs.ts): token ids (forward, runWithCache,
// runWithHooks, embed, generate's inputIds and prefill, int32/float32 tensors), the context window
// (learned positions: error; RoPE and generation_config's max_length: one warning, or an error /
// silence by contextPolicy; max_length as the default length), padding without an attention mask,
// and integer seeds. Each case failed silently (or deep inside GatherV2) before the checks.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { tf } from '../../lib/engine/tf.js';
import { createModel, generate, loadModel, padRows, type Decoder } from '../../lib/model/index.js';
import { mixSeed, mulberry32 } from '../../lib/model/random.js';
import { fixtureDir, loadExpected, rows } from './helpers.js';

// llama-A: vocab 320, RoPE, max_position_embeddings 256, pad 0, eos 2.
// gpt2-A: vocab 320, learned positions, n_positions 128, no pad id.
let llama: Decoder;
let gpt2: Decoder;
let prompt: number[][];
let leftPadded: number[][];
let leftMask: number[][];
beforeAll(async () => {
  llama = await loadModel(fixtureDir('llama-A'));
  gpt2 = await loadModel(fixtureDir('gpt2-A'));
  const exp = loadExpected('llama-A');
  prompt = rows(exp.get('input_ids')!).map((r) => r.slice(0, 10));
  leftPadded = rows(exp.get('leftpad_input_ids')!);
  leftMask = rows(exp.get('leftpad_attention_mask')!);
});
afterAll(() => {
  llama.dispose();
  gpt2.dispose();
});

/** A tiny llama (RoPE) with a 16-position window; a fresh one per test (the warning is once per model). */
function tinyRope(generationConfig: Record<string, unknown> = {}): Decoder {
  const model = createModel({
    model_type: 'llama', vocab_size: 40, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 1, num_attention_heads: 2,
    num_key_value_heads: 1, max_position_embeddings: 16, initializer_range: 0.2, bos_token_id: 1, eos_token_id: 2, pad_token_id: 0,
  }, { seed: 4 });
  model.generationConfig = generationConfig;
  return model;
}
const TINY_PROMPT = [[1, 5, 9, 33, 7, 11, 13, 17, 19, 23]];

describe('token ids', () => {
  const rule = 'token ids must be integers in [0, 320)';
  it.each([
    ['NaN', NaN, 'NaN'],
    ['a fraction', 46.7, '46.7'],
    ['a string', '46', '"46" (a string)'],
    ['negative', -1, '-1'],
    ['= vocab size', 320, '320'],
    ['1e10 (printed in full, not wrapped to int32)', 1e10, '10000000000'],
    ['missing', undefined, 'undefined (missing)'],
  ])('forward rejects %s, naming row, position and value', (_n, bad, shown) => {
    expect(() => llama.forward([[1, 5, 9], [1, bad as number, 34]])).toThrow(`forward: inputIds[1][1] is ${shown}; ${rule}`);
  });

  it('every entry point checks: runWithCache, runWithHooks, embed, positionIds', () => {
    expect(() => llama.runWithCache([[1, NaN]])).toThrow(`runWithCache: inputIds[0][1] is NaN; ${rule}`);
    expect(() => llama.runWithHooks([[400, 1]], { fwd: [] })).toThrow(`runWithHooks: inputIds[0][0] is 400; ${rule}`);
    expect(() => llama.embed([[1, 2.5]])).toThrow(`embed: ids[0][1] is 2.5; ${rule}`);
    expect(() => llama.forward([[1, 5]], { positionIds: [[0, NaN]] })).toThrow('forward: positionIds[0][1] is NaN; position ids must be integers >= 0');
  });

  it('tensors are checked too (values read on host-memory backends): float32 fractions and out-of-range int32', () => {
    const frac = tf.tensor2d([[1, 46.5]], [1, 2], 'float32');
    const big = tf.tensor2d([[1, 5], [320, 3]], [2, 2], 'int32');
    expect(() => llama.forward(frac)).toThrow(`forward: inputIds[0][1] is 46.5; ${rule}`);
    expect(() => llama.forward(big)).toThrow(`forward: inputIds[1][0] is 320; ${rule}`);
    const ok = tf.tensor2d([[1, 46]], [1, 2], 'float32');
    const logits = llama.forward(ok).logits;
    expect(logits.shape).toEqual([1, 2, 320]);
    tf.dispose([frac, big, ok, logits]);
  });

  it('checks leave no tensors behind', () => {
    const before = tf.memory().numTensors;
    expect(() => llama.forward([[1, NaN]])).toThrow();
    expect(() => gpt2.forward([Array(130).fill(5)])).toThrow();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('generate checks inputIds, prefill (shared and per row) and padTokenId', async () => {
    await expect(generate(llama, [[1, NaN, 34]], { maxNewTokens: 1 })).rejects.toThrow(`generate: inputIds[0][1] is NaN; ${rule}`);
    await expect(generate(llama, tf.tensor2d([[1, 400]], [1, 2], 'int32'), { maxNewTokens: 1 })).rejects.toThrow(`generate: inputIds[0][1] is 400; ${rule}`);
    // 5.5 came back in newTokens while the model was fed 5
    await expect(generate(llama, [prompt[0]], { prefill: [5.5], maxNewTokens: 1 })).rejects.toThrow(`generate: prefill[0] is 5.5; ${rule}`);
    await expect(generate(llama, prompt, { prefill: [[3], [4, 1e10]], maxNewTokens: 1 })).rejects.toThrow(`generate: prefill[1][1] is 10000000000; ${rule}`);
    await expect(generate(llama, prompt, { padTokenId: 320, maxNewTokens: 1 })).rejects.toThrow('generate: `padTokenId` is 320; it must be an integer token id in [0, 320)');
  });
});

describe('context window', () => {
  it('learned positions (gpt2): generate refuses up front, naming the numbers', async () => {
    const spy = vi.spyOn(gpt2, 'forward');
    try {
      // 12 + 117 = 129 > n_positions 128: used to run every step, then fail in GatherV2 with nothing returned
      await expect(generate(gpt2, [Array(12).fill(5)], { maxNewTokens: 117, eosTokenId: null })).rejects.toThrow(
        "generate: prompt 12 + prefill 0 + maxNewTokens 117 = 129 tokens (longest row) exceed this gpt2 model's n_positions 128",
      );
      await expect(generate(gpt2, [Array(100).fill(5)], { prefill: Array(20).fill(6), maxNewTokens: 10, contextPolicy: 'allow' })).rejects.toThrow(/= 130 tokens .* n_positions 128: it has learned absolute position embeddings/);
      expect(spy).not.toHaveBeenCalled();
      // exactly n_positions is fine
      const g = await generate(gpt2, [Array(126).fill(5)], { maxNewTokens: 2, eosTokenId: null });
      expect(g.newTokens[0]).toHaveLength(2);
    } finally {
      spy.mockRestore();
    }
  });

  it('learned positions (gpt2): forward gives a clear error instead of GatherV2', () => {
    expect(() => gpt2.forward([Array(130).fill(5)])).toThrow("forward: 130 positions exceed this gpt2 model's n_positions 128 (learned absolute position embeddings");
    expect(() => gpt2.forward([[5, 6]], { positionIds: [[0, 128]] })).toThrow(/positionIds\[0\]\[1\] is 128; position ids must be integers in \[0, 128\)/);
    const logits = gpt2.forward([Array(128).fill(5)]).logits;
    expect(logits.shape).toEqual([1, 128, 320]);
    logits.dispose();
  });

  it('RoPE past max_position_embeddings: one warning per model (default), an error, or silence', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      const model = tinyRope();
      // prompt 10 + 10 new = 20 > 16: generates, warns once
      const g = await generate(model, TINY_PROMPT, { maxNewTokens: 10, eosTokenId: null });
      expect(g.newTokens[0]).toHaveLength(10);
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][0])).toContain("prompt 10 + prefill 0 + maxNewTokens 10 = 20 tokens (longest row) exceed this llama model's max_position_embeddings 16 (RoPE");
      await generate(model, TINY_PROMPT, { prefill: [3, 4, 5, 6, 7, 8, 9], maxNewTokens: 1, eosTokenId: null });
      expect(warn).toHaveBeenCalledTimes(1);
      await expect(generate(model, TINY_PROMPT, { maxNewTokens: 10, contextPolicy: 'error' })).rejects.toThrow(/= 20 tokens .* max_position_embeddings 16/);
      const quiet = tinyRope();
      await generate(quiet, TINY_PROMPT, { maxNewTokens: 10, eosTokenId: null, contextPolicy: 'allow' });
      expect(warn).toHaveBeenCalledTimes(1);
      // within the window: nothing
      await generate(tinyRope(), TINY_PROMPT, { maxNewTokens: 6, eosTokenId: null });
      expect(warn).toHaveBeenCalledTimes(1);
      await expect(generate(quiet, TINY_PROMPT, { contextPolicy: 'maybe' as never })).rejects.toThrow("`contextPolicy` must be 'warn', 'error' or 'allow'");
    } finally {
      warn.mockRestore();
    }
  });

  it("generation_config's max_length: the default length, and a limit checked like the window", async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    try {
      // max_length 14, prompt 10: 4 new tokens by default (was 20, past the 16-position window)
      const g = await generate(tinyRope({ max_length: 14 }), TINY_PROMPT, { eosTokenId: null });
      expect(g.newTokens[0]).toHaveLength(4);
      expect(g.sequences[0]).toHaveLength(14);
      // left padding does not count: positions, not columns
      const padded = await generate(tinyRope({ max_length: 14 }), [[0, 0, ...TINY_PROMPT[0]]], { eosTokenId: null });
      expect(padded.newTokens[0]).toHaveLength(4);
      // max_new_tokens wins over max_length, as in transformers
      const n = await generate(tinyRope({ max_length: 14, max_new_tokens: 2 }), TINY_PROMPT, { eosTokenId: null });
      expect(n.newTokens[0]).toHaveLength(2);
      // a prompt already past max_length with no maxNewTokens: an error, not 20 silent tokens
      await expect(generate(tinyRope({ max_length: 8 }), TINY_PROMPT)).rejects.toThrow("prompt + prefill (10 tokens) already exceeds generation_config.json's max_length 8");
      expect(warn).not.toHaveBeenCalled();
      // an explicit maxNewTokens past max_length (inside the window): the policy applies
      await generate(tinyRope({ max_length: 12 }), TINY_PROMPT, { maxNewTokens: 4, eosTokenId: null });
      expect(warn).toHaveBeenCalledTimes(1);
      expect(String(warn.mock.calls[0][0])).toContain("= 14 tokens (longest row) exceed generation_config.json's max_length 12");
    } finally {
      warn.mockRestore();
    }
  });
});

describe('padding without an attention mask', () => {
  it('generate: a right-padded batch is an error naming row and position', async () => {
    const rightPadded = [prompt[0].slice(0, 6), [...prompt[1].slice(0, 4), 0, 0]];
    await expect(generate(llama, rightPadded, { maxNewTokens: 2 })).rejects.toThrow(
      /generate: inputIds\[1\]\[4\] is the pad id 0 after the row's first token \(right padding, or padding inside the row\) and no attentionMask was given/,
    );
    // the pad id from the option, and padding inside a row
    await expect(generate(llama, [[1, 7, 9, 8, 9]], { padTokenId: 9, maxNewTokens: 2 })).rejects.toThrow(/inputIds\[0\]\[2\] is the pad id 9/);
    // a row of nothing but pads
    await expect(generate(llama, [[1, 5], [0, 0]], { maxNewTokens: 2 })).rejects.toThrow('generate: inputIds row 1 holds only the pad id 0');
    // with a mask the caller has said what is padding: no error
    const g = await generate(llama, rightPadded, { attentionMask: [Array(6).fill(1), Array(6).fill(1)], maxNewTokens: 2, eosTokenId: null });
    expect(g.newTokens[1]).toHaveLength(2);
  });

  it('generate: left padding without a mask is still inferred (same tokens as with the mask)', async () => {
    const withMask = await generate(llama, leftPadded, { attentionMask: leftMask, maxNewTokens: 8, eosTokenId: null });
    const inferred = await generate(llama, leftPadded, { maxNewTokens: 8, eosTokenId: null });
    expect(inferred.sequences).toEqual(withMask.sequences);
  });

  it('generate: pad id = eos id: right padding and uneven leading runs are errors; an eos inside a row is a token', async () => {
    const opts = { padTokenId: 2, eosTokenId: 2, maxNewTokens: 2 };
    await expect(generate(llama, [[1, 5, 6, 7], [1, 8, 2, 2]], opts)).rejects.toThrow(/inputIds\[1\]\[2\.\.3\] are the pad id 2 \(also an eos id\) at the end of the row/);
    await expect(generate(llama, [[1, 5, 6, 7], [2, 2, 1, 8]], opts)).rejects.toThrow(/inputIds row 1 starts with 2 pad ids \(2, also an eos id\) and other rows with fewer/);
    const turns = await generate(llama, [[1, 5, 2, 7], [1, 8, 2, 9]], opts);
    expect(turns.newTokens).toHaveLength(2);
    // the same leading run in every row (eos used as bos) is not padding
    const bos = await generate(llama, [[2, 5, 6], [2, 7, 8]], opts);
    expect(bos.newTokens).toHaveLength(2);
  });

  it('forward: left padding without a mask is an error; right padding is allowed (real positions are exact)', () => {
    expect(() => llama.forward(leftPadded)).toThrow(/forward: inputIds\[1\]\[0\.\.4\] are the pad id 0 before the row's first token \(left padding\)/);
    llama.forward(leftPadded, { attentionMask: leftMask }).logits.dispose();
    // causal attention: right padding leaves the real tokens' logits unchanged (no mask needed)
    const row = prompt[1].slice(0, 5);
    const padded = tf.tidy(() => llama.forward([[...row, 0, 0]]).logits.slice([0, 0, 0], [1, 5, -1]));
    const alone = llama.forward([row]).logits;
    expect(Array.from(padded.dataSync())).toEqual(Array.from(alone.dataSync()));
    tf.dispose([padded, alone]);
  });
});

describe('seeds', () => {
  it.each([
    ['NaN', NaN, 'NaN (number)'],
    ['a string', 'abc', '"abc" (string)'],
    ['a fraction', 0.5, '0.5 (number)'],
  ])('generate rejects seed %s instead of acting as seed 0', async (_n, seed, shown) => {
    await expect(generate(llama, prompt, { doSample: true, seed: seed as number, maxNewTokens: 2 })).rejects.toThrow(`\`seed\` must be an integer seed, but is ${shown}`);
  });

  it('mulberry32 and mixSeed validate too', () => {
    expect(() => mulberry32(NaN)).toThrow('`seed` must be an integer seed, but is NaN');
    expect(() => mulberry32(0.5)).toThrow('`seed` must be an integer seed, but is 0.5');
    expect(() => mixSeed(Infinity)).toThrow('`seed` must be an integer seed');
    expect(mulberry32(-3)()).toBe(mulberry32(-3)());
  });
});

describe('padRows', () => {
  it('pads to the longest row on either side, the mask 0 exactly on the pads', () => {
    const rows = [[5, 6, 7], [8], [9, 10]];
    expect(padRows(rows, 0, 'left')).toEqual({ inputIds: [[5, 6, 7], [0, 0, 8], [0, 9, 10]], attentionMask: [[1, 1, 1], [0, 0, 1], [0, 1, 1]] });
    expect(padRows(rows, 2, 'right')).toEqual({ inputIds: [[5, 6, 7], [8, 2, 2], [9, 10, 2]], attentionMask: [[1, 1, 1], [1, 0, 0], [1, 1, 0]] });
  });
});
