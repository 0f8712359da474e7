// The one place the kit imports TensorFlow.js from. tfjs-core + the cpu backend (always present);
// lib/engine registers the faster backends and runtime kernel fixes on top.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
// tfjs-core's Node bundle registers no gradients and no chained ops (t.reshape(), t.add(), ...):
// those live in the union package's bundle, which registers them into tfjs-core's global registries
// (the same tfjs-core instance, resolved from node_modules). Without this, tf.grad throws
// "gradient function not found".
import '@tensorflow/tfjs';

export { tf };
export type Tensor = tf.Tensor;
