// Small wasm kernels whose stock versions waste time in training steps.
//
// Identity: the stock kernel copies the tensor; tfjs calls it hundreds of times per backward pass
// (gradient bookkeeping). Tensors are immutable (Variable.assign swaps data ids instead of writing
// in place), so sharing the data with a reference count, as the cpu backend and wasm's own Reshape
// do, is safe.
//
// Comparisons (Equal, Less, ...): the stock kernels run a per-element index computation whenever
// the operands broadcast; Max/logSumExp's gradient compares [B, T, V] logits against their
// [B, T, 1] maximum (34 ms per step for the benchmark model). Here a strided loop with a
// contiguous innermost axis.
import { tf } from '../tf.js';

type TensorInfo = tf.TensorInfo;

interface WasmBackend {
  incRef(dataId: object): void;
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

export const identityWasmConfig: tf.KernelConfig = {
  kernelName: tf.Identity,
  backendName: 'wasm',
  kernelFunc: ({ inputs, backend }) => {
    const { x } = inputs as { x: TensorInfo };
    if (x.dtype === 'string') throw new Error('Identity (wasm): string tensors are not supported');
    (backend as unknown as WasmBackend).incRef(x.dataId);
    return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
  },
};

type Compare = (x: number, y: number) => boolean;

/**
 * out[i] = f(a[ia], b[ib]) over the broadcast of aShape and bShape (numpy rules). The innermost
 * axis runs as a plain loop with fixed steps (0 for a broadcast operand).
 */
export function broadcastCompare(
  a: ArrayLike<number>, aShape: number[], b: ArrayLike<number>, bShape: number[],
  outShape: number[], out: Uint8Array, f: Compare,
): void {
  const rank = outShape.length;
  const size = out.length;
  if (size === 0) return;
  const pad = (s: number[]) => [...Array(rank - s.length).fill(1), ...s];
  const ap = pad(aShape), bp = pad(bShape);
  // Element strides of a and b along each output axis (0 where that operand broadcasts).
  const aStride = new Array<number>(rank).fill(0), bStride = new Array<number>(rank).fill(0);
  for (let d = rank - 1, sa = 1, sb = 1; d >= 0; d--) {
    aStride[d] = ap[d] === 1 ? 0 : sa;
    bStride[d] = bp[d] === 1 ? 0 : sb;
    sa *= ap[d];
    sb *= bp[d];
  }
  const inner = rank === 0 ? 1 : outShape[rank - 1];
  const aStep = rank === 0 ? 0 : aStride[rank - 1], bStep = rank === 0 ? 0 : bStride[rank - 1];
  const coord = new Array<number>(Math.max(rank - 1, 0)).fill(0);
  let ia = 0, ib = 0;
  for (let o = 0; o < size; o += inner) {
    for (let j = 0, x = ia, y = ib; j < inner; j++, x += aStep, y += bStep) out[o + j] = f(a[x], b[y]) ? 1 : 0;
    // Odometer over the outer axes.
    for (let d = rank - 2; d >= 0; d--) {
      coord[d]++;
      ia += aStride[d];
      ib += bStride[d];
      if (coord[d] < outShape[d]) break;
      ia -= aStride[d] * outShape[d];
      ib -= bStride[d] * outShape[d];
      coord[d] = 0;
    }
  }
}

const COMPARES: Record<string, Compare> = {
  [tf.Equal]: (x, y) => x === y,
  [tf.NotEqual]: (x, y) => x !== y,
  [tf.Less]: (x, y) => x < y,
  [tf.LessEqual]: (x, y) => x <= y,
  [tf.Greater]: (x, y) => x > y,
  [tf.GreaterEqual]: (x, y) => x >= y,
};

export const compareWasmConfigs: tf.KernelConfig[] = Object.entries(COMPARES).map(([kernelName, f]) => ({
  kernelName,
  backendName: 'wasm',
  kernelFunc: ({ inputs, backend: kernelBackend }) => {
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    const backend = kernelBackend as unknown as WasmBackend;
    const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const out = backend.makeOutput(outShape, 'bool');
    // Views after makeOutput: it may grow (and detach) the heap.
    broadcastCompare(
      backend.typedArrayFromHeap(a), a.shape, backend.typedArrayFromHeap(b), b.shape,
      outShape, backend.typedArrayFromHeap(out) as Uint8Array, f,
    );
    return out;
  },
}));

interface WasmHeapBackend extends WasmBackend {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
}

/**
 * GatherV2 as one memmove per gathered slice inside the wasm heap. The stock kernel copies element
 * by element with index arithmetic (an embedding lookup of 1,024 tokens x 128 dims took 3-6 ms of a
 * training step) and returns wrong rows when batchDims > 0.
 */
export const gatherWasmConfig: tf.KernelConfig = {
  kernelName: tf.GatherV2,
  backendName: 'wasm',
  kernelFunc: ({ inputs, backend: kernelBackend, attrs }) => {
    const { x, indices } = inputs as { x: TensorInfo; indices: TensorInfo };
    const { axis, batchDims } = attrs as unknown as { axis: number; batchDims: number };
    const backend = kernelBackend as unknown as WasmHeapBackend;
    if (x.dtype === 'string') throw new Error('GatherV2 (wasm): string tensors are not supported');
    const ax = tf.util.parseAxisParam(axis, x.shape)[0];
    const bd = batchDims < 0 ? batchDims + indices.shape.length : batchDims;
    tf.util.assert(
      bd >= 0 && bd <= ax && x.shape.slice(0, bd).every((d, i) => d === indices.shape[i]),
      () => `GatherV2 (wasm): \`batchDims\` (${batchDims}) must be <= axis (${ax}) and the first batchDims ` +
        `axes of \`x\` [${x.shape}] and \`indices\` [${indices.shape}] must match`,
    );
    const axisDim = x.shape[ax];
    const batch = tf.util.sizeFromShape(x.shape.slice(0, bd));
    const outer = tf.util.sizeFromShape(x.shape.slice(bd, ax));
    const inner = tf.util.sizeFromShape(x.shape.slice(ax + 1));
    const outShape = [...x.shape.slice(0, ax), ...indices.shape.slice(bd), ...x.shape.slice(ax + 1)];
    const out = backend.makeOutput(outShape, x.dtype);
    const ids = backend.typedArrayFromHeap(indices);
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!(id >= 0 && id < axisDim)) throw new Error(`GatherV2 (wasm): the index value ${id} is not in [0, ${axisDim - 1}]`);
    }
    const n = batch === 0 ? 0 : ids.length / batch; // indices per batch
    const bytes = tf.util.bytesPerElement(x.dtype);
    const heap = backend.wasm.HEAPU8;
    const src = backend.dataIdMap.get(x.dataId).memoryOffset;
    const dst = backend.dataIdMap.get(out.dataId).memoryOffset;
    const slice = inner * bytes;
    for (let b = 0; b < batch; b++) {
      for (let o = 0; o < outer; o++) {
        const srcBase = src + (b * outer + o) * axisDim * slice;
        const dstBase = dst + (b * outer + o) * n * slice;
        for (let i = 0; i < n; i++) {
          const from = srcBase + ids[b * n + i] * slice;
          heap.copyWithin(dstBase + i * slice, from, from + slice);
        }
      }
    }
    return out;
  },
};
