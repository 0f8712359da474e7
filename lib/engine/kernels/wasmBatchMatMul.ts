// BatchMatMul for the wasm backend that always takes XNNPACK's fast path.
//
// Why: the stock wasm kernel hands a product to XNNPACK's fully-connected operator only when both
// operands have batch 1 and neither is transposed; everything else (every weight gradient, every
// attention product) runs a scalar triple loop, about 10x slower. Here transposed operands are
// materialised once with the wasm Transpose kernel, a shared right operand folds the left batch into
// rows (one [batch*m, k] x [k, n] product), and other batches run as one fast-path call per batch
// on zero-copy views: extra tensor ids registered at offsets inside the operands' heap memory.
import { tf } from '../tf.js';
import { broadcastBatchIndex, matMulGeometry } from './matMulGeometry.js';

type TensorInfo = tf.TensorInfo;

interface WasmModule {
  cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void;
  tfjs: {
    registerTensor(id: number, size: number, memoryOffset: number): void;
    disposeData(id: number): void;
  };
}
interface WasmBackend {
  wasm: WasmModule;
  dataIdNextNumber: number;
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array;
  disposeData(dataId: object): boolean;
}

type RawBatchMatMul = (
  aId: number, aShape: Uint8Array, aRank: number,
  bId: number, bShape: Uint8Array, bRank: number,
  transposeA: boolean, transposeB: boolean, outId: number,
) => void;

const rawByModule = new WeakMap<WasmModule, RawBatchMatMul>();
function rawBatchMatMul(backend: WasmBackend): RawBatchMatMul {
  let raw = rawByModule.get(backend.wasm);
  if (raw === undefined) {
    raw = backend.wasm.cwrap(tf.BatchMatMul, null, [
      'number', 'array', 'number', 'number', 'array', 'number', 'number', 'number', 'number',
    ]) as unknown as RawBatchMatMul;
    rawByModule.set(backend.wasm, raw);
  }
  return raw;
}

const shapeBytes = (shape: number[]) => new Uint8Array(new Int32Array(shape).buffer);

/** Swaps the last two axes into fresh heap memory with the wasm Transpose kernel. */
function transposeLastTwo(x: TensorInfo, backend: WasmBackend): TensorInfo {
  const rank = x.shape.length;
  const perm = [...Array(rank).keys()];
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  const transpose = tf.getKernel(tf.Transpose, 'wasm');
  return transpose.kernelFunc({
    inputs: { x },
    backend: backend as unknown as tf.KernelBackend,
    attrs: { perm },
  }) as TensorInfo;
}

const kernelFunc: tf.KernelFunc = ({ inputs, backend: kernelBackend, attrs }) => {
  const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
  const { transposeA, transposeB } = attrs as unknown as { transposeA: boolean; transposeB: boolean };
  const backend = kernelBackend as unknown as WasmBackend;
  const { m, n, k, outShape, aOuter, bOuter, outer, batchOut } = matMulGeometry(a, b, transposeA, transposeB, 'BatchMatMul (wasm)');
  const out = backend.makeOutput(outShape, 'float32');
  if (m * n * batchOut === 0) return out;
  if (k === 0) {
    // Nothing to sum over: the product is all zeros.
    backend.typedArrayFromHeap(out).fill(0);
    return out;
  }

  // XNNPACK wants plain row-major [m, k] x [k, n]: materialise the transposed operands.
  const aPlain = transposeA ? transposeLastTwo(a, backend) : a;
  const bPlain = transposeB ? transposeLastTwo(b, backend) : b;
  const raw = rawBatchMatMul(backend);
  const aBase = backend.dataIdMap.get(aPlain.dataId).memoryOffset;
  const bBase = backend.dataIdMap.get(bPlain.dataId).memoryOffset;
  const outBase = backend.dataIdMap.get(out.dataId).memoryOffset;

  // One temporary id per view; disposing it drops XNNPACK's cached operator for that id.
  const views: number[] = [];
  const view = (memoryOffset: number, size: number) => {
    const id = backend.dataIdNextNumber++;
    backend.wasm.tfjs.registerTensor(id, size, memoryOffset);
    views.push(id);
    return id;
  };
  try {
    const batchA = tf.util.sizeFromShape(aOuter);
    const batchB = tf.util.sizeFromShape(bOuter);
    if (batchB === 1 && batchA === batchOut) {
      // Shared right operand: all left batches are just more rows of one product.
      const rows = batchA * m;
      raw(
        view(aBase, rows * k), shapeBytes([1, rows, k]), 3,
        view(bBase, k * n), shapeBytes([1, k, n]), 3,
        false, false, view(outBase, rows * n),
      );
    } else {
      const { aIndex, bIndex } = broadcastBatchIndex(outer, aOuter, bOuter);
      const aShape = shapeBytes([1, m, k]);
      const bShape = shapeBytes([1, k, n]);
      const bViews = new Map<number, number>();
      for (let o = 0; o < batchOut; o++) {
        // Reuse a right-operand view across batches so XNNPACK packs each weight matrix once.
        let bId = bViews.get(bIndex[o]);
        if (bId === undefined) {
          bId = view(bBase + bIndex[o] * k * n * 4, k * n);
          bViews.set(bIndex[o], bId);
        }
        raw(
          view(aBase + aIndex[o] * m * k * 4, m * k), aShape, 3,
          bId, bShape, 3,
          false, false, view(outBase + o * m * n * 4, m * n),
        );
      }
    }
  } finally {
    for (const id of views) backend.wasm.tfjs.disposeData(id);
    if (aPlain !== a) backend.disposeData(aPlain.dataId);
    if (bPlain !== b) backend.disposeData(bPlain.dataId);
  }
  return out;
};

export const batchMatMulWasmConfig: tf.KernelConfig = {
  kernelName: tf.BatchMatMul,
  backendName: 'wasm',
  kernelFunc,
};
