// TransformerLens-style hook points. A hook point is an identity on the forward path with a name;
// hooks registered on it can read the activation or return a replacement. Names (and shapes):
//   hook_embed                      [B, T, dModel]  token embeddings (after gemma's sqrt(d) scale)
//   hook_pos_embed                  [B, T, dModel]  learned position embeddings (gpt2 only)
//   blocks.{i}.hook_resid_pre       [B, T, dModel]  input of block i
//   blocks.{i}.ln1.hook_normalized  [B, T, dModel]  attention input after the pre-attention norm
//   blocks.{i}.attn.hook_q          [B, T, nHeads, dHead]   after projection (+bias, +q-norm), before RoPE
//   blocks.{i}.attn.hook_k|hook_v   [B, T, nKvHeads, dHead] same, for keys / values (new positions only)
//   blocks.{i}.attn.hook_rot_q|rot_k                        after RoPE
//   blocks.{i}.attn.hook_attn_scores [B, nHeads, Tq, Tk]    scaled, soft-capped, masked pre-softmax scores
//   blocks.{i}.attn.hook_pattern     [B, nHeads, Tq, Tk]    softmax probabilities
//   blocks.{i}.attn.hook_z          [B, T, nHeads, dHead]   per-head attention output before o_proj
//   blocks.{i}.hook_attn_out        [B, T, dModel]  attention output (after gemma2/3's post-attention norm)
//   blocks.{i}.hook_resid_mid       [B, T, dModel]  resid_pre + attn_out
//   blocks.{i}.ln2.hook_normalized  [B, T, dModel]  MLP input after the pre-MLP norm
//   blocks.{i}.mlp.hook_pre         [B, T, dMlp]    pre-activation (gate projection for gated MLPs)
//   blocks.{i}.mlp.hook_post        [B, T, dMlp]    act(gate) * up (gated) or act(fc)
//   blocks.{i}.hook_mlp_out         [B, T, dModel]  MLP output (after gemma2/3's post-feedforward norm)
//   blocks.{i}.hook_resid_post      [B, T, dModel]  output of block i
//   ln_final.hook_normalized        [B, T, dModel]  final norm output (input of the unembedding)
// During cached decoding T is the number of new positions (1 per step) and Tk the full length.
import type { tf } from '../engine/tf.js';

/** Per-block hook points, in the order a block fires them. */
export const BLOCK_HOOK_SUFFIXES = [
  'hook_resid_pre',
  'ln1.hook_normalized',
  'attn.hook_q',
  'attn.hook_k',
  'attn.hook_v',
  'attn.hook_rot_q',
  'attn.hook_rot_k',
  'attn.hook_attn_scores',
  'attn.hook_pattern',
  'attn.hook_z',
  'hook_attn_out',
  'hook_resid_mid',
  'ln2.hook_normalized',
  'mlp.hook_pre',
  'mlp.hook_post',
  'hook_mlp_out',
  'hook_resid_post',
] as const;
export type BlockHookSuffix = (typeof BLOCK_HOOK_SUFFIXES)[number];

export type HookName = 'hook_embed' | 'hook_pos_embed' | 'ln_final.hook_normalized' | `blocks.${number}.${BlockHookSuffix}`;

export interface HookContext {
  name: HookName;
  /** block index, or undefined for hook_embed / hook_pos_embed / ln_final */
  layer?: number;
}

/** Return a tensor of the same shape to replace the activation, or nothing to leave it. */
export type HookFn = (activation: tf.Tensor, ctx: HookContext) => tf.Tensor | void;
export type HookFilter = HookName | ((name: HookName) => boolean);

/** Short names for notebooks: act('pattern', 3) -> 'blocks.3.attn.hook_pattern'; negative layers count from the end
 *  (resolved here when nLayers is given, else by the model that runs the hook). */
export function act(short: string, layer?: number, nLayers?: number): HookName {
  const blockLevel: Record<string, BlockHookSuffix> = {
    resid_pre: 'hook_resid_pre',
    resid_mid: 'hook_resid_mid',
    resid_post: 'hook_resid_post',
    attn_out: 'hook_attn_out',
    mlp_out: 'hook_mlp_out',
    q: 'attn.hook_q',
    k: 'attn.hook_k',
    v: 'attn.hook_v',
    rot_q: 'attn.hook_rot_q',
    rot_k: 'attn.hook_rot_k',
    z: 'attn.hook_z',
    attn_scores: 'attn.hook_attn_scores',
    scores: 'attn.hook_attn_scores',
    pattern: 'attn.hook_pattern',
    pre: 'mlp.hook_pre',
    post: 'mlp.hook_post',
    mlp_pre: 'mlp.hook_pre',
    mlp_post: 'mlp.hook_post',
    ln1: 'ln1.hook_normalized',
    ln2: 'ln2.hook_normalized',
  };
  if (short === 'embed') return 'hook_embed';
  if (short === 'pos_embed') return 'hook_pos_embed';
  if (short === 'ln_final' || short === 'normalized') return 'ln_final.hook_normalized';
  const suffix = blockLevel[short];
  if (!suffix) throw new Error(`act: unknown hook short name "${short}"; known: embed, pos_embed, ln_final, ${Object.keys(blockLevel).join(', ')}`);
  if (layer === undefined) throw new Error(`act: "${short}" is a per-block hook and needs a layer index`);
  let i = layer;
  // Without nLayers a negative index stays in the name; the model's runWithCache / runWithHooks
  // resolve `blocks.-1.` to its last block.
  if (i < 0 && nLayers !== undefined) i = nLayers + i;
  return `blocks.${i}.${suffix}`;
}

/** The set of hooks active during one forward pass. */
export class HookSet {
  private readonly entries: [HookFilter, HookFn][];
  constructor(entries: [HookFilter, HookFn][] = []) {
    this.entries = entries;
  }
  get empty(): boolean {
    return this.entries.length === 0;
  }
  /** Pass `x` through every hook whose filter matches `name`, in registration order. */
  run(name: HookName, x: tf.Tensor, layer?: number): tf.Tensor {
    let out = x;
    for (const [filter, fn] of this.entries) {
      if (typeof filter === 'string' ? filter !== name : !filter(name)) continue;
      const replaced = fn(out, { name, layer });
      if (replaced) {
        if (replaced.shape.join() !== out.shape.join()) {
          throw new Error(`hook ${name}: replacement has shape [${replaced.shape}], expected [${out.shape}]`);
        }
        out = replaced;
      }
    }
    return out;
  }
}
