// A bigram test model (embedding -> tanh -> unembedding) satisfying CausalLM: small enough that the
// training-loop tests run in milliseconds, independent of lib/model.
import { tf } from '../../lib/engine/tf.js';
import type { CausalLM } from '../../lib/objectives/index.js';
import { Rng } from '../../lib/organism/index.js';

export function tinyModel(vocab: number, dim: number, seed: number): { model: CausalLM; params: Map<string, tf.Variable> } {
  const rng = new Rng(seed);
  const init = (shape: number[]) => tf.variable(tf.tensor(Float32Array.from({ length: shape[0] * (shape[1] ?? 1) }, () => (rng.next() - 0.5) * 0.5), shape), true);
  const params = new Map<string, tf.Variable>([
    ['embed.weight', init([vocab, dim])],
    ['norm.weight', init([dim])],
    ['lm_head.weight', init([dim, vocab])],
  ]);
  const model: CausalLM = {
    forward(ids) {
      return tf.tidy(() => {
        const [b, t] = ids.shape;
        const h = tf.tanh(tf.mul(tf.gather(params.get('embed.weight')!, tf.reshape(ids, [-1])), params.get('norm.weight')!));
        return { logits: tf.reshape(tf.matMul(h, params.get('lm_head.weight')!), [b, t, vocab]) as tf.Tensor3D };
      });
    },
  };
  return { model, params };
}
