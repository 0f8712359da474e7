// Hook points: names and shapes, agreement with hiddenStates/attentions, replacement semantics
// (zeroing a head's z equals zeroing its o_proj columns), shorthand names, cleanup.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tf } from '../../lib/engine/tf.js';
import { act, loadModel, type Decoder, type HookName } from '../../lib/model/index.js';
import { fixtureDir, loadExpected, relErr, rows } from './helpers.js';

let llama: Decoder;
let gpt2: Decoder;
let ids: number[][];
beforeAll(async () => {
  llama = await loadModel(fixtureDir('llama-A'));
  gpt2 = await loadModel(fixtureDir('gpt2-A'));
  ids = rows(loadExpected('llama-A').get('input_ids')!).map((r) => r.slice(0, 8));
});
afterAll(() => {
  llama.dispose();
  gpt2.dispose();
});

describe('runWithCache', () => {
  it('records every hook point with the documented shapes, and matches hiddenStates / attentions', () => {
    const before = tf.memory().numTensors;
    const { out, cache } = llama.runWithCache(ids, { outputHiddenStates: true, outputAttentions: true });
    const [B, T, D, H, Hkv, dh, F] = [2, 8, 64, 4, 2, 16, 160];
    const shapes: Record<string, number[]> = {
      hook_embed: [B, T, D],
      'ln_final.hook_normalized': [B, T, D],
    };
    for (let i = 0; i < 2; i++) {
      Object.assign(shapes, {
        [`blocks.${i}.hook_resid_pre`]: [B, T, D],
        [`blocks.${i}.ln1.hook_normalized`]: [B, T, D],
        [`blocks.${i}.attn.hook_q`]: [B, T, H, dh],
        [`blocks.${i}.attn.hook_k`]: [B, T, Hkv, dh],
        [`blocks.${i}.attn.hook_v`]: [B, T, Hkv, dh],
        [`blocks.${i}.attn.hook_rot_q`]: [B, T, H, dh],
        [`blocks.${i}.attn.hook_rot_k`]: [B, T, Hkv, dh],
        [`blocks.${i}.attn.hook_attn_scores`]: [B, H, T, T],
        [`blocks.${i}.attn.hook_pattern`]: [B, H, T, T],
        [`blocks.${i}.attn.hook_z`]: [B, T, H, dh],
        [`blocks.${i}.hook_attn_out`]: [B, T, D],
        [`blocks.${i}.hook_resid_mid`]: [B, T, D],
        [`blocks.${i}.ln2.hook_normalized`]: [B, T, D],
        [`blocks.${i}.mlp.hook_pre`]: [B, T, F],
        [`blocks.${i}.mlp.hook_post`]: [B, T, F],
        [`blocks.${i}.hook_mlp_out`]: [B, T, D],
        [`blocks.${i}.hook_resid_post`]: [B, T, D],
      });
    }
    expect(cache.keys().sort()).toEqual(Object.keys(shapes).sort());
    for (const [name, shape] of Object.entries(shapes)) expect(cache.get(name).shape, name).toEqual(shape);
    // consistency with the standard outputs
    const hs = out.hiddenStates!;
    expect(relErr(cache.get('blocks.0.hook_resid_pre'), hs[0].dataSync())).toBe(0);
    expect(relErr(cache.get('blocks.1.hook_resid_pre'), hs[1].dataSync())).toBe(0);
    expect(relErr(cache.get('blocks.0.hook_resid_post'), hs[1].dataSync())).toBe(0);
    expect(relErr(cache.get('ln_final.hook_normalized'), hs[2].dataSync())).toBe(0);
    expect(relErr(cache.get('pattern', -1), out.attentions![1].dataSync())).toBe(0);
    // scores are masked (float32 min above the diagonal) before the softmax
    expect(cache.get('blocks.0.attn.hook_attn_scores').dataSync()[1]).toBeLessThan(-1e38);
    tf.dispose([out.logits, ...hs, ...out.attentions!]);
    cache.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('can be restricted to some names; gpt2 has hook_pos_embed', () => {
    const names: HookName[] = ['hook_pos_embed', 'blocks.1.mlp.hook_post'];
    const { out, cache } = gpt2.runWithCache(ids, { names });
    expect(cache.keys().sort()).toEqual([...names].sort());
    expect(cache.get('post', 1).shape).toEqual([2, 8, 256]);
    expect(() => cache.get('hook_embed')).toThrow(/ActivationCache: no activation "hook_embed"/);
    out.logits.dispose();
    cache.dispose();
  });
});

describe('runWithHooks', () => {
  it('an identity hook changes nothing; hooks are gone after the call', () => {
    const plain = llama.forward(ids).logits;
    let calls = 0;
    const hooked = llama.runWithHooks(ids, { fwd: [[(n) => n.endsWith('hook_resid_post'), () => void calls++]] }).logits;
    expect(calls).toBe(2);
    expect(Array.from(hooked.dataSync())).toEqual(Array.from(plain.dataSync()));
    llama.forward(ids).logits.dispose();
    expect(calls).toBe(2);
    tf.dispose([plain, hooked]);
  });

  it('zero-ablating head 2 of block 1 through hook_z equals zeroing its o_proj input columns', () => {
    const layer = 1;
    const head = 2;
    const dh = 16;
    const ablated = llama.runWithHooks(ids, {
      fwd: [
        [
          act('z', layer),
          (z) => {
            const keep = tf.tensor1d([1, 1, 0, 1]).reshape([1, 1, 4, 1]);
            return tf.mul(z, keep);
          },
        ],
      ],
    }).logits;
    const o = llama.variables().get(`model.layers.${layer}.self_attn.o_proj.weight`)!;
    const saved = o.clone();
    const colMask = tf.tensor1d(Array.from({ length: 64 }, (_, c) => (Math.floor(c / dh) === head ? 0 : 1))).reshape([1, 64]);
    o.assign(tf.mul(saved, colMask));
    const reference = llama.forward(ids).logits;
    o.assign(saved);
    const plain = llama.forward(ids).logits;
    expect(relErr(ablated, reference.dataSync())).toBeLessThan(1e-6);
    expect(relErr(ablated, plain.dataSync())).toBeGreaterThan(1e-3);
    tf.dispose([ablated, reference, plain, saved, colMask]);
  });

  it('patching the residual stream of one run into another makes the outputs equal from there on', () => {
    const other = ids.map((r) => r.map((x, i) => (i === 0 ? x : (x * 7) % 320)));
    const { out, cache } = llama.runWithCache(other, { names: ['blocks.0.hook_resid_post'] });
    const patched = llama.runWithHooks(ids, { fwd: [['blocks.0.hook_resid_post', () => cache.get('blocks.0.hook_resid_post')]] }).logits;
    expect(relErr(patched, out.logits.dataSync())).toBeLessThan(1e-6);
    tf.dispose([out.logits, patched]);
    cache.dispose();
  });

  it('a replacement of the wrong shape is an error naming the hook', () => {
    expect(() => llama.runWithHooks(ids, { fwd: [['blocks.0.attn.hook_pattern', () => tf.zeros([1, 2])]] })).toThrow(
      'hook blocks.0.attn.hook_pattern: replacement has shape [1,2], expected [2,4,8,8]',
    );
  });
});

describe('hook names are checked', () => {
  it('lists every point the model fires (no rot_q/rot_k without RoPE; hook_pos_embed only with learned positions)', () => {
    const { out, cache } = llama.runWithCache(ids);
    expect(cache.keys().sort()).toEqual([...llama.hookNames()].sort());
    tf.dispose(out.logits);
    cache.dispose();
    expect(llama.hookNames()).toHaveLength(1 + 2 * 17 + 1);
    expect(gpt2.hookNames()).toContain('hook_pos_embed');
    expect(gpt2.hookNames()).not.toContain('blocks.0.attn.hook_rot_q');
  });

  it('rejects unknown names and blocks out of range, naming them, instead of never firing', () => {
    expect(() => llama.runWithHooks(ids, { fwd: [['blocks.9.hook_resid_post', () => undefined]] })).toThrow(
      /runWithHooks: unknown hook point "blocks.9.hook_resid_post" for this 2-block llama model; block 9 does not exist/,
    );
    expect(() => llama.runWithCache(ids, { names: ['blocks.0.attn.pattern'] })).toThrow(/runWithCache: unknown hook point "blocks.0.attn.pattern"/);
  });

  it('resolves negative block indices, also from act() without nLayers', () => {
    const { out, cache } = llama.runWithCache(ids, { names: [act('pattern', -1)] });
    expect(cache.keys()).toEqual(['blocks.1.attn.hook_pattern']);
    let fired = '';
    const hooked = llama.runWithHooks(ids, { fwd: [['blocks.-2.hook_resid_pre', (x, ctx) => { fired = ctx.name; return x; }]] });
    expect(fired).toBe('blocks.0.hook_resid_pre');
    tf.dispose([out.logits, hooked.logits]);
    cache.dispose();
  });
});

describe('act shorthand', () => {
  it('maps TransformerLens short names', () => {
    expect(act('pattern', -1, 2)).toBe('blocks.1.attn.hook_pattern');
    expect(act('pattern', -1)).toBe('blocks.-1.attn.hook_pattern');
    expect(act('resid_post', 0)).toBe('blocks.0.hook_resid_post');
    expect(act('embed')).toBe('hook_embed');
    expect(() => act('resid', 0)).toThrow(/act: unknown hook short name "resid"/);
  });
});
