// BatchMatMul through the native addon's SIMD GEMM, for the wasm and cpu backends. Operands are
// read where they live (the wasm heap, or cpu tensors' Float32Arrays); transposes are handled by
// the GEMM's packing, and broadcast batches by per-batch offsets, so nothing is copied in JS.
import { tf } from '../tf.js';
import type { NativeAddon } from '../native.js';
import { broadcastBatchIndex, matMulGeometry } from './matMulGeometry.js';

type TensorInfo = tf.TensorInfo;

interface WasmBackend {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
}
interface CpuBackend {
  data: { get(dataId: object): { values: Float32Array } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array): TensorInfo;
}

function batchOffsets(g: ReturnType<typeof matMulGeometry>) {
  const { aIndex, bIndex } = broadcastBatchIndex(g.outer, g.aOuter, g.bOuter);
  const c = new Uint32Array(g.batchOut);
  for (let q = 0; q < g.batchOut; q++) {
    aIndex[q] *= g.m * g.k;
    bIndex[q] *= g.k * g.n;
    c[q] = q * g.m * g.n;
  }
  return { a: aIndex, b: bIndex, c };
}

let heapView: Float32Array | null = null;

export function nativeMatMulWasmConfig(addon: NativeAddon): tf.KernelConfig {
  return {
    kernelName: tf.BatchMatMul,
    backendName: 'wasm',
    kernelFunc: ({ inputs, backend: kernelBackend, attrs }) => {
      const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
      const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      const backend = kernelBackend as unknown as WasmBackend;
      const g = matMulGeometry(a, b, transposeA, transposeB, 'BatchMatMul (native on wasm)');
      const out = backend.makeOutput(g.outShape, 'float32');
      if (g.m * g.n * g.batchOut === 0) return out;
      // The heap's buffer is replaced when wasm memory grows (makeOutput may have grown it).
      const buffer = backend.wasm.HEAPU8.buffer;
      if (heapView === null || heapView.buffer !== buffer) heapView = new Float32Array(buffer);
      const off = batchOffsets(g);
      const aBase = backend.dataIdMap.get(a.dataId).memoryOffset >>> 2;
      const bBase = backend.dataIdMap.get(b.dataId).memoryOffset >>> 2;
      const cBase = backend.dataIdMap.get(out.dataId).memoryOffset >>> 2;
      for (let q = 0; q < g.batchOut; q++) {
        off.a[q] += aBase;
        off.b[q] += bBase;
        off.c[q] += cBase;
      }
      addon.sgemm(heapView, heapView, heapView, off.a, off.b, off.c, g.m, g.n, g.k, transposeA, transposeB);
      return out;
    },
  };
}

export function nativeMatMulCpuConfig(addon: NativeAddon): tf.KernelConfig {
  return {
    kernelName: tf.BatchMatMul,
    backendName: 'cpu',
    kernelFunc: ({ inputs, backend: kernelBackend, attrs }) => {
      const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
      const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
      const backend = kernelBackend as unknown as CpuBackend;
      const g = matMulGeometry(a, b, transposeA, transposeB, 'BatchMatMul (native on cpu)');
      const values = new Float32Array(g.batchOut * g.m * g.n);
      if (values.length > 0) {
        const off = batchOffsets(g);
        addon.sgemm(
          backend.data.get(a.dataId).values, backend.data.get(b.dataId).values, values,
          off.a, off.b, off.c, g.m, g.n, g.k, transposeA, transposeB,
        );
      }
      return backend.makeTensorInfo(g.outShape, 'float32', values);
    },
  };
}
