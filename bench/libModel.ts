// The same benchmark through the kit's own stack: lib/model's createModel/forward/generate and
// lib/train's AdamW, with the standard benchmark model's HF config (torch_reference.py's model).
import { tf } from '../lib/engine/index.js';
import { createModel, generate, type Decoder } from '../lib/model/index.js';
import { targetLogProbs } from '../lib/objectives/index.js';
import { AdamW } from '../lib/train/index.js';

export const STANDARD_HF_CONFIG = {
  model_type: 'llama',
  vocab_size: 512,
  hidden_size: 128,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  intermediate_size: 352,
  rope_theta: 10000,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: false,
  hidden_act: 'silu',
  max_position_embeddings: 2048,
  initializer_range: 0.02,
};

export function createBenchModel(config: Record<string, unknown> = STANDARD_HF_CONFIG): { model: Decoder; opt: AdamW } {
  const model = createModel(config, { seed: 0 });
  // torch.optim.AdamW decays every parameter (lr 1e-3, wd 0.01): match it.
  const opt = new AdamW(model.variables(), { weightDecay: 0.01, decay: () => true });
  return { model, opt };
}

/**
 * One training step as lib/train runs it: forward on ids [B, T+1], lib/objectives' next-token
 * log-probs (T targets per row, mean cross-entropy), backward, lib/train's AdamW. Resolves when the
 * loss is on the host. (One position more than the peer's forward: conservative for us.)
 */
export async function libTrainStep(model: Decoder, opt: AdamW, ids: tf.Tensor2D): Promise<number> {
  const params = [...model.variables().values()];
  const names = [...model.variables().keys()];
  const { value, grads } = tf.variableGrads(() => {
    const logits = model.forward(ids).logits; // [B, T+1, V]
    return tf.neg(tf.mean(targetLogProbs(logits, ids))) as tf.Scalar;
  }, params);
  const byName: Record<string, tf.Tensor> = {};
  params.forEach((p, i) => (byName[names[i]] = grads[p.name]));
  opt.applyGradients(byName, 1e-3);
  const loss = (await value.data())[0];
  tf.dispose([value, ...Object.values(grads)]);
  return loss;
}

/** Greedy decoding with lib/model's generate (KV cache), never stopping early. */
export async function libGenerate(model: Decoder, prompt: number[][], newTokens: number): Promise<number[][]> {
  const out = await generate(model, prompt, { maxNewTokens: newTokens, eosTokenId: null });
  return out.newTokens;
}
