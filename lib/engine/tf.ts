// The one place the kit imports TensorFlow.js from. tfjs-core + the cpu backend (always present);
// lib/engine registers the faster backends and runtime kernel fixes on top.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';

export { tf };
export type Tensor = tf.Tensor;
