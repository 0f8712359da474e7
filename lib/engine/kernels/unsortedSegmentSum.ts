// UnsortedSegmentSum in one pass, for the cpu and wasm backends.
//
// Why: it is the gradient of GatherV2 (every embedding lookup). wasm has no kernel for it, and the
// stock cpu kernel builds a [numSegments, N] one-hot comparison per segment, O(numSegments * N * D):
// 8.5 s per training step for a 512-token vocabulary. Scatter-adding each row is O(N * D).
import { tf } from '../tf.js';

type TensorInfo = tf.TensorInfo;

/**
 * out[segmentIds[i], j] += x[i, j] for i < numRows, j < innerSize. Ids outside [0, numSegments) are
 * dropped, as in TensorFlow. `out` must be zero-filled and hold numSegments * innerSize values.
 */
export function segmentSumInto(
  x: ArrayLike<number>,
  segmentIds: ArrayLike<number>,
  numRows: number,
  innerSize: number,
  numSegments: number,
  out: Float32Array | Int32Array,
): void {
  for (let row = 0; row < numRows; row++) {
    const segment = segmentIds[row];
    if (segment < 0 || segment >= numSegments) continue;
    const src = row * innerSize;
    const dst = segment * innerSize;
    for (let j = 0; j < innerSize; j++) out[dst + j] += x[src + j];
  }
}

/** Output shape and the [numRows, innerSize] view of `x` that the kernel works on. */
function segmentSumGeometry(x: TensorInfo, segmentIds: TensorInfo, numSegments: number) {
  const idsRank = segmentIds.shape.length;
  const leading = x.shape.slice(0, idsRank);
  tf.util.assert(
    leading.length === idsRank && leading.every((d, i) => d === segmentIds.shape[i]),
    () =>
      `UnsortedSegmentSum: \`segmentIds\` shape [${segmentIds.shape}] must be a prefix of ` +
      `\`x\` shape [${x.shape}]`,
  );
  tf.util.assert(
    Number.isInteger(numSegments) && numSegments >= 0,
    () => `UnsortedSegmentSum: \`numSegments\` must be a non-negative integer, but is ${numSegments}`,
  );
  const innerShape = x.shape.slice(idsRank);
  return {
    outShape: [numSegments, ...innerShape],
    numRows: tf.util.sizeFromShape(segmentIds.shape),
    innerSize: tf.util.sizeFromShape(innerShape),
  };
}

// Minimal structural views of the two backends (their classes are not exported as types we can
// import without pulling the packages into every consumer).
interface CpuLikeBackend {
  data: { get(dataId: object): { values: ArrayLike<number> } };
  makeTensorInfo(shape: number[], dtype: tf.DataType, values: Float32Array | Int32Array): TensorInfo;
}
interface WasmLikeBackend {
  makeOutput(shape: number[], dtype: tf.DataType): TensorInfo;
  typedArrayFromHeap(t: TensorInfo): Float32Array | Int32Array | Uint8Array;
}

function allocate(dtype: tf.DataType, size: number): Float32Array | Int32Array {
  if (dtype === 'float32') return new Float32Array(size);
  if (dtype === 'int32') return new Int32Array(size);
  throw new Error(`UnsortedSegmentSum: \`x\` dtype must be float32 or int32, but is ${dtype}`);
}

const cpuKernelFunc: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const { numSegments } = attrs as unknown as { numSegments: number };
  const cpu = backend as unknown as CpuLikeBackend;
  const g = segmentSumGeometry(x, segmentIds, numSegments);
  const out = allocate(x.dtype, numSegments * g.innerSize);
  segmentSumInto(
    cpu.data.get(x.dataId).values,
    cpu.data.get(segmentIds.dataId).values,
    g.numRows,
    g.innerSize,
    numSegments,
    out,
  );
  return cpu.makeTensorInfo(g.outShape, x.dtype, out);
};

const wasmKernelFunc: tf.KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const { numSegments } = attrs as unknown as { numSegments: number };
  const wasm = backend as unknown as WasmLikeBackend;
  const g = segmentSumGeometry(x, segmentIds, numSegments);
  allocate(x.dtype, 0); // dtype check before touching the heap
  const outInfo = wasm.makeOutput(g.outShape, x.dtype);
  // Views are taken after makeOutput: allocating may grow (and detach) the wasm heap.
  const out = wasm.typedArrayFromHeap(outInfo) as Float32Array | Int32Array;
  out.fill(0);
  segmentSumInto(
    wasm.typedArrayFromHeap(x),
    wasm.typedArrayFromHeap(segmentIds),
    g.numRows,
    g.innerSize,
    numSegments,
    out,
  );
  return outInfo;
};

export const unsortedSegmentSumCpuConfig: tf.KernelConfig = {
  kernelName: tf.UnsortedSegmentSum,
  backendName: 'cpu',
  kernelFunc: cpuKernelFunc,
};

export const unsortedSegmentSumWasmConfig: tf.KernelConfig = {
  kernelName: tf.UnsortedSegmentSum,
  backendName: 'wasm',
  kernelFunc: wasmKernelFunc,
};
