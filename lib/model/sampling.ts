// Logits processors: small functions over one row of logits (a Float32Array of length V, on the
// CPU), applied in order temperature -> top-k -> top-p -> min-p, as transformers' warpers do.
// Each validates its argument when it is built. Masked-out entries become -Infinity.

export type LogitsProcessor = (logits: Float32Array) => Float32Array;

export function temperatureProcessor(temperature: number): LogitsProcessor {
  if (!(typeof temperature === 'number' && temperature > 0 && Number.isFinite(temperature))) {
    throw new Error(`\`temperature\` must be a finite number > 0, got ${temperature} (for greedy decoding set \`doSample: false\`)`);
  }
  return (logits) => {
    if (temperature === 1) return logits;
    const out = new Float32Array(logits.length);
    for (let i = 0; i < logits.length; i++) out[i] = logits[i] / temperature;
    return out;
  };
}

/** Keep the k largest logits (ties with the k-th are kept too, like torch.topk thresholding). */
export function topKProcessor(k: number): LogitsProcessor {
  if (!(Number.isInteger(k) && k > 0)) throw new Error(`\`top_k\` must be a positive integer, got ${k}`);
  return (logits) => {
    if (k >= logits.length) return logits;
    const threshold = kthLargest(logits, k);
    return logits.map((x) => (x < threshold ? -Infinity : x));
  };
}

/** Keep the smallest set of most likely tokens whose probability mass reaches p (at least one). */
export function topPProcessor(p: number): LogitsProcessor {
  if (!(typeof p === 'number' && p > 0 && p <= 1)) throw new Error(`\`top_p\` must be in (0, 1], got ${p}`);
  return (logits) => {
    if (p === 1) return logits;
    const probs = softmax(logits);
    const order = argsortDescending(probs);
    const keep = new Uint8Array(logits.length);
    let mass = 0;
    for (const i of order) {
      keep[i] = 1;
      mass += probs[i];
      if (mass >= p) break;
    }
    return logits.map((x, i) => (keep[i] ? x : -Infinity));
  };
}

/** Drop tokens whose probability is below minP times the top token's probability. */
export function minPProcessor(minP: number): LogitsProcessor {
  if (!(typeof minP === 'number' && minP >= 0 && minP <= 1)) throw new Error(`\`min_p\` must be in [0, 1], got ${minP}`);
  return (logits) => {
    const probs = softmax(logits);
    let top = 0;
    for (const q of probs) top = Math.max(top, q);
    const cut = minP * top;
    return logits.map((x, i) => (probs[i] < cut ? -Infinity : x));
  };
}

export interface SamplingOptions {
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
}

/** The processor list for these options, in transformers' order. */
export function buildProcessors(opts: SamplingOptions): LogitsProcessor[] {
  const list: LogitsProcessor[] = [];
  if (opts.temperature !== undefined) list.push(temperatureProcessor(opts.temperature));
  if (opts.topK !== undefined) list.push(topKProcessor(opts.topK));
  if (opts.topP !== undefined) list.push(topPProcessor(opts.topP));
  if (opts.minP !== undefined) list.push(minPProcessor(opts.minP));
  return list;
}

// ---------------------------------------------------------------------------------------------
// helpers on plain arrays (float64 accumulation)

export function softmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const out = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    out[i] = Math.exp(logits[i] - max);
    sum += out[i];
  }
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

export function logSoftmax(logits: ArrayLike<number>): Float64Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  const out = new Float64Array(logits.length);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lse;
  return out;
}

/** First index of the maximum (torch.argmax picks the first of equal maxima). */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/** Indices sorted by value descending; equal values keep index order. */
export function argsortDescending(x: ArrayLike<number>): number[] {
  const idx = Array.from({ length: x.length }, (_, i) => i);
  return idx.sort((a, b) => x[b] - x[a] || a - b);
}

/** The k largest indices, descending (partial selection, O(V k) worst case but k is small). */
export function topKIndices(x: ArrayLike<number>, k: number): number[] {
  const best: number[] = [];
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (best.length === k && !(v > x[best[k - 1]])) continue;
    let pos = best.length === k ? k - 1 : best.length;
    while (pos > 0 && v > x[best[pos - 1]]) pos--;
    best.splice(pos, 0, i);
    if (best.length > k) best.pop();
  }
  return best;
}

function kthLargest(x: ArrayLike<number>, k: number): number {
  const top = topKIndices(x, k);
  return x[top[top.length - 1]];
}

/** 1-based rank of x[i]: 1 + the number of strictly larger entries. */
export function rankOf(x: ArrayLike<number>, i: number): number {
  let r = 1;
  const v = x[i];
  for (let j = 0; j < x.length; j++) if (x[j] > v) r++;
  return r;
}

/** Draw an index from softmax(logits) with one uniform number u in [0, 1). */
export function sampleFromLogits(logits: ArrayLike<number>, u: number): number {
  const probs = softmax(logits);
  let acc = 0;
  let last = 0;
  for (let i = 0; i < probs.length; i++) {
    if (probs[i] === 0) continue;
    acc += probs[i];
    last = i;
    if (u < acc) return i;
  }
  return last; // rounding left acc slightly below 1
}
