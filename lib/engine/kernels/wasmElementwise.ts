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
