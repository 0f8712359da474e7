// Shared by the engine tests: a seeded generator, the error measure the kernel tests use, and a
// way to run a reference on the stock cpu backend.
import { overrideKernel, restoreStockKernel, stockKernel, tf } from '../../lib/engine/index.js';
import { Rng } from '../../lib/organism/rng.js';

/** The kit's seeded generator (mulberry32, raw seed) as a function. */
export function rng(seed: number): () => number {
  const r = new Rng(seed);
  return () => r.next();
}

export function randomArray(rand: () => number, size: number, scale = 1): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = (rand() * 2 - 1) * scale;
  return out;
}

export function randomInt(rand: () => number, lo: number, hi: number): number {
  return lo + Math.floor(rand() * (hi - lo + 1));
}

/** max |got - want| / max(|want|, tiny): relative to the reference's scale, so near-zeros do not blow up. */
export function relativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) throw new Error(`length ${got.length} != ${want.length}`);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  return diff / Math.max(scale, 1e-30);
}

/** Runs `f` on `backend` and returns plain arrays, so results from two backends can be compared. */
export async function onBackend<T>(backend: string, f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  // tfjs's "install tfjs-node" banner, printed on the cpu backend's first write, is noise here.
  (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  const out = tf.tidy(f);
  const list = Array.isArray(out) ? out : [out];
  const arrays = list.map((t) => Float32Array.from(t.dataSync()));
  tf.dispose(list);
  return arrays;
}

/** The cpu kernels lib/engine may replace (initEngine's UnsortedSegmentSum fix; the cpu backend's native GEMM). */
const CPU_OVERRIDES = [tf.UnsortedSegmentSum, tf.BatchMatMul];

/**
 * Runs `f` on the stock cpu backend: every cpu kernel lib/engine replaced is swapped back for
 * tfjs's own while `f` runs, then ours are put back. The references of the kernel and fused-op
 * tests run here, so no kit kernel can vouch for itself.
 */
export async function onStockCpu(f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  const ours = CPU_OVERRIDES.map((name) => ({ name, config: tf.getKernel(name, 'cpu') as tf.KernelConfig | undefined }))
    .filter(({ name, config }) => config !== undefined && config !== stockKernel(name, 'cpu'));
  for (const { name } of ours) restoreStockKernel(name, 'cpu');
  try {
    for (const { name, config } of ours) {
      if (tf.getKernel(name, 'cpu') === config) throw new Error(`onStockCpu: the kit's ${name} (cpu) is still registered`);
    }
    return await onBackend('cpu', f);
  } finally {
    for (const { config } of ours) overrideKernel(config!);
  }
}
