// Shapes of a BatchMatMul: sizes, output shape, and which batch of each operand feeds each output
// batch under numpy broadcasting of the leading axes.
import { tf } from '../tf.js';

type TensorInfo = tf.TensorInfo;

export interface MatMulGeometry {
  m: number;
  n: number;
  k: number;
  outShape: number[];
  /** Leading (batch) axes of a and b, and their broadcast. */
  aOuter: number[];
  bOuter: number[];
  outer: number[];
  batchOut: number;
}

export function matMulGeometry(a: TensorInfo, b: TensorInfo, transposeA: boolean, transposeB: boolean, where: string): MatMulGeometry {
  if (a.dtype !== 'float32' || b.dtype !== 'float32') {
    throw new Error(`${where}: \`a\` and \`b\` must be float32, but are ${a.dtype} and ${b.dtype}`);
  }
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  tf.util.assert(aRank >= 2 && bRank >= 2, () => `${where}: \`a\` [${a.shape}] and \`b\` [${b.shape}] must have rank >= 2`);
  const m = transposeA ? a.shape[aRank - 1] : a.shape[aRank - 2];
  const kA = transposeA ? a.shape[aRank - 2] : a.shape[aRank - 1];
  const kB = transposeB ? b.shape[bRank - 1] : b.shape[bRank - 2];
  const n = transposeB ? b.shape[bRank - 2] : b.shape[bRank - 1];
  tf.util.assert(
    kA === kB,
    () => `${where}: inner dimensions ${kA} and ${kB} of \`a\` [${a.shape}] and \`b\` [${b.shape}] ` +
      `(transposeA=${transposeA}, transposeB=${transposeB}) must match`,
  );
  const aOuter = a.shape.slice(0, -2);
  const bOuter = b.shape.slice(0, -2);
  const outer = tf.backend_util.assertAndGetBroadcastShape(aOuter, bOuter);
  return { m, n, k: kA, outShape: [...outer, m, n], aOuter, bOuter, outer, batchOut: tf.util.sizeFromShape(outer) };
}

/** Flat index of each output batch into a's and b's batches, following numpy broadcasting. */
export function broadcastBatchIndex(outer: number[], aOuter: number[], bOuter: number[]) {
  const total = tf.util.sizeFromShape(outer);
  const aIndex = new Uint32Array(total);
  const bIndex = new Uint32Array(total);
  const rank = outer.length;
  const pad = (s: number[]) => [...Array(rank - s.length).fill(1), ...s];
  const aPadded = pad(aOuter);
  const bPadded = pad(bOuter);
  for (let o = 0; o < total; o++) {
    let rest = o;
    let ai = 0, bi = 0, aStride = 1, bStride = 1;
    for (let d = rank - 1; d >= 0; d--) {
      const coord = rest % outer[d];
      rest = Math.floor(rest / outer[d]);
      if (aPadded[d] !== 1) ai += coord * aStride;
      if (bPadded[d] !== 1) bi += coord * bStride;
      aStride *= aPadded[d];
      bStride *= bPadded[d];
    }
    aIndex[o] = ai;
    bIndex[o] = bi;
  }
  return { aIndex, bIndex };
}
