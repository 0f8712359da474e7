// lib/engine: the tfjs instance, backend selection (initEngine) and runtime kernel fixes.
export { tf } from './tf.js';
export type { Tensor } from './tf.js';
export { initEngine, engineReport, formatEngineReport, BACKENDS } from './init.js';
export type { BackendName, EngineOptions, EngineReport, BackendAttempt } from './init.js';
export { stockKernel, overrideKernel, restoreStockKernel } from './kernels/stock.js';
export { segmentSumInto } from './kernels/unsortedSegmentSum.js';
export { rmsNorm, swiglu, fusedAttention, rope, ropeReference, crossEntropy, adamwUpdate, adamwReference, registerFusedKernels, ROPE_KERNEL, ADAMW_KERNEL, CE_KERNEL, CE_GRAD_KERNEL } from './fused.js';
export type { FusedAttentionOptions, AdamWUpdateOptions } from './fused.js';
export { loadNative } from './native.js';
export type { NativeAddon, NativeLoad } from './native.js';
