// Where the harmful prefill sits in a training sequence, for the objectives that look at it
// (PRESTO's attention term, push-forward alignment). A safety-recovery example (x, h[:k], r) has its
// prefill span at [|x|, |x| + k): `start` is the first prefill token's position (= the length of
// the prompt x), `length` is k. A plain refusal (k = 0) has length 0, a utility-anchor row none.
// Positions count from the row's first token, so they hold in the trainer's right-padded batches.
//
// An example carries its span as `extras.prefill = { start, length }`; the trainer's `batchExtras`
// hook turns a batch's spans into `{ prefillMask, prefillSpans }` with collatePrefillSpans.

import { tf } from '../engine/tf.js';

export interface PrefillSpan {
  /** Position of the first prefill token (the prompt's length). */
  start: number;
  /** Number of prefill tokens (k); 0 for a plain refusal. */
  length: number;
}

/** What collatePrefillSpans adds to a batch's extras. */
export type PrefillExtras = {
  /** float32 [B, T]: 1 on prefill tokens, 0 elsewhere (rows without a prefill are all 0). */
  prefillMask: tf.Tensor2D;
  /** Per row: its span, or null (no span given, e.g. a utility-anchor row). */
  prefillSpans: (PrefillSpan | null)[];
};

function checkSpan(span: unknown, rowLength: number, where: string): PrefillSpan {
  const s = span as PrefillSpan;
  if (typeof s !== 'object' || s === null || !Number.isInteger(s.start) || !Number.isInteger(s.length)) {
    throw new Error(`${where}: \`extras.prefill\` must be { start, length } with integer fields, but is ${JSON.stringify(span)}`);
  }
  if (s.length < 0 || s.start < 1 || s.start + s.length > rowLength) {
    throw new Error(`${where}: prefill span { start: ${s.start}, length: ${s.length} } must satisfy start >= 1 (a prompt precedes it), length >= 0 and start + length <= the row's ${rowLength} tokens`);
  }
  return { start: s.start, length: s.length };
}

/** The prefill span of each example (`extras.prefill`), or null where it has none; spans are checked against the row's length. */
export function prefillSpansOf(examples: readonly { ids: readonly number[]; extras?: Record<string, unknown> }[]): (PrefillSpan | null)[] {
  return examples.map((e, r) => {
    const span = e.extras?.prefill;
    return span === undefined ? null : checkSpan(span, e.ids.length, `prefillSpansOf (example ${r})`);
  });
}

/** [B][width] 0/1 rows: 1 on each span's positions (right-padded layout: positions counted from column 0). */
export function prefillMaskRows(spans: readonly (PrefillSpan | null)[], width: number): number[][] {
  return spans.map((s) => {
    const row = new Array<number>(width).fill(0);
    if (s) {
      if (s.start + s.length > width) throw new Error(`prefillMaskRows: span { start: ${s.start}, length: ${s.length} } runs past the batch width ${width}`);
      row.fill(1, s.start, s.start + s.length);
    }
    return row;
  });
}

/**
 * The trainer's `batchExtras` for PRESTO and push-forward alignment: the examples' prefill spans and
 * a [B, T] prefill mask in the right-padded layout `collate` builds (T = the longest example).
 */
export function collatePrefillSpans(examples: readonly { ids: readonly number[]; extras?: Record<string, unknown> }[]): PrefillExtras {
  if (examples.length === 0) throw new Error('collatePrefillSpans: `examples` is empty');
  const width = Math.max(...examples.map((e) => e.ids.length));
  const prefillSpans = prefillSpansOf(examples);
  const prefillMask = tf.tensor2d(prefillMaskRows(prefillSpans, width), [examples.length, width], 'float32');
  return { prefillMask, prefillSpans };
}
