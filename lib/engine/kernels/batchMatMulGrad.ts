// BatchMatMul's gradient when the batch axes broadcast. tfjs 4.22's gradient (on every backend)
// returns da and db with the *broadcast* batch shape, so tf.grad throws "The gradient of input 'b'
// has shape '4,3,5', which does not match the shape of the input '3,5'". A broadcast operand's
// gradient is the sum over the axes it was broadcast along; this wraps the stock gradient and adds
// that sum. Products whose batch axes agree take the stock gradient unchanged (no extra kernel).
import { tf } from '../tf.js';

let stockGrad: tf.GradConfig | null = null;

/** Sums `g` over the axes along which `shape` was broadcast to g's shape, back to `shape`. */
function sumToShape(g: tf.Tensor, shape: number[]): tf.Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const axes = tf.backend_util.getReductionAxes(shape, g.shape);
  return tf.reshape(axes.length ? tf.sum(g, axes) : g, shape);
}

/** Replaces the BatchMatMul gradient with the broadcast-aware one (idempotent); initEngine calls it. */
export function registerBatchMatMulGradFix(): void {
  if (stockGrad !== null) return;
  const stock = tf.getGradient(tf.BatchMatMul);
  if (stock === undefined) throw new Error('registerBatchMatMulGradFix: tfjs registered no BatchMatMul gradient (is @tensorflow/tfjs imported by lib/engine/tf.ts?)');
  stockGrad = stock;
  tf.registerGradient({
    kernelName: tf.BatchMatMul,
    inputsToSave: ['a', 'b'],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved;
      const grads = stock.gradFunc(dy, saved, attrs);
      return { a: () => sumToShape(grads.a(), a.shape), b: () => sumToShape(grads.b(), b.shape) };
    },
  });
}
