// Runtime kernel overrides: replace a backend's registered kernel with ours while keeping the
// stock one reachable (tests compare against it; some overrides delegate to it on the fast path).
import { tf } from '../tf.js';

type KernelConfig = tf.KernelConfig;

const stockKernels = new Map<string, KernelConfig | null>();

/** The kernel that `backendName` had for `kernelName` before lib/engine overrode it (null: none). */
export function stockKernel(kernelName: string, backendName: string): KernelConfig | null {
  const key = `${backendName}_${kernelName}`;
  if (stockKernels.has(key)) return stockKernels.get(key) ?? null;
  return (tf.getKernel(kernelName, backendName) as KernelConfig | undefined) ?? null;
}

/**
 * Registers `config` in place of the current kernel for its (kernelName, backendName), remembering
 * the stock one once. Idempotent: overriding twice keeps the first stock kernel.
 */
export function overrideKernel(config: KernelConfig): void {
  const key = `${config.backendName}_${config.kernelName}`;
  const existing = tf.getKernel(config.kernelName, config.backendName) as KernelConfig | undefined;
  if (!stockKernels.has(key)) stockKernels.set(key, existing ?? null);
  if (existing !== undefined) tf.unregisterKernel(config.kernelName, config.backendName);
  tf.registerKernel(config);
}

/** Puts the stock kernel back (or removes ours when there was none); for tests and A/B benchmarks. */
export function restoreStockKernel(kernelName: string, backendName: string): void {
  const key = `${backendName}_${kernelName}`;
  if (!stockKernels.has(key)) return;
  const stock = stockKernels.get(key) ?? null;
  if (tf.getKernel(kernelName, backendName) !== undefined) tf.unregisterKernel(kernelName, backendName);
  if (stock !== null) tf.registerKernel(stock);
  stockKernels.delete(key);
}
