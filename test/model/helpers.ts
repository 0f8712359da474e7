// Shared helpers for the model tests: fixture paths and error measures.
import * as path from 'path';
import { fileURLToPath } from 'url';
import { tf } from '../../lib/engine/tf.js';
import { loadSafetensors, type LoadedTensor } from '../../lib/io/safetensors.js';

export const FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'hf', 'models');
export const FIXTURE_MODELS = ['llama-A', 'qwen2-A', 'qwen3-A', 'mistral-A', 'gemma-A', 'gemma2-A', 'gemma3_text-A', 'gpt2-A'];

export function fixtureDir(name: string): string {
  return path.join(FIXTURES, name);
}

export function loadExpected(name: string): Map<string, LoadedTensor> {
  return loadSafetensors(path.join(FIXTURES, name, 'expected.safetensors'));
}

/** Rows of an int tensor [B, T] as number[][]. */
export function rows(t: LoadedTensor): number[][] {
  const [B, T] = t.shape;
  return Array.from({ length: B }, (_, b) => Array.from(t.data.subarray(b * T, (b + 1) * T)));
}

/** max |x - ref| / max |ref| */
export function relErr(x: tf.Tensor | ArrayLike<number>, ref: ArrayLike<number>): number {
  const a = x instanceof tf.Tensor ? x.dataSync() : x;
  if (a.length !== ref.length) throw new Error(`relErr: ${a.length} values vs ${ref.length} reference values`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - ref[i]));
    den = Math.max(den, Math.abs(ref[i]));
  }
  return num / den;
}
