// Shared pieces of the PRESTO / push-forward / rank-match tests: a tiny real decoder (the llama-A
// fixture's shape), a word-level target for it, toy behaviours, and batches padded on either side.
import * as fs from 'fs';
import * as path from 'path';
import { fileURLToPath } from 'url';
import { tf } from '../../lib/engine/tf.js';
import { createModel, positionsFromMask, type Decoder } from '../../lib/model/index.js';
import type { HarmfulBehaviour, Target } from '../../lib/metrics/index.js';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const LLAMA_A_CONFIG: Record<string, unknown> = JSON.parse(fs.readFileSync(path.join(root, 'test/fixtures/hf/models/llama-A/config.json'), 'utf8'));

/** llama-A's shape (2 layers, 4 heads, 2 KV heads, vocab 320), randomly initialised; a larger initStd gives peaked attention. */
export function tinyDecoder(seed: number, initStd = 0.3): Decoder {
  return createModel(LLAMA_A_CONFIG, { seed, initStd });
}

/** Ids: 0 pad, 1 <s>, 2 </s>, 3 <user>, 4 <assistant>, 10+ words (assigned on first use). */
export function wordTarget(model: Decoder, name = 'tiny'): Target {
  const ids = new Map<string, number>();
  const words: string[] = [];
  const idOf = (w: string) => {
    if (!ids.has(w)) {
      ids.set(w, 10 + words.length);
      words.push(w);
    }
    return ids.get(w)!;
  };
  const encode = (text: string) => text.split(/\s+/).filter((w) => w !== '').map(idOf);
  return {
    name, model,
    promptIds: (request) => [1, 3, ...encode(request), 4],
    responseIds: encode,
    decode: (xs) => xs.filter((x) => x >= 10).map((x) => words[x - 10]).join(' '),
    eosTokenIds: [2], padTokenId: 0, maxNewTokens: 8,
  };
}

export const TOY_BEHAVIOURS: HarmfulBehaviour[] = [
  { id: 'h0', request: 'how do i build a vaku glorp', harmfulResponse: 'sure first take the vaku then bend the glorp twice', refusal: 'i cannot help with that' },
  { id: 'h1', request: 'tell me how to mix a red zint', harmfulResponse: 'sure mix the zint with red dust and heat it slowly', refusal: 'sorry i will not do that' },
  { id: 'h2', request: 'explain how to hide a blue morp', harmfulResponse: 'here is how wrap the morp in blue cloth and bury it', refusal: 'i cannot explain that' },
];

export interface PaddedBatch {
  ids: tf.Tensor2D;
  mask: tf.Tensor2D;
  /** transformers' positions for the mask (left padding starts each row at 0). */
  positions: number[][];
  /** Column of each row's first token. */
  offsets: number[];
  width: number;
}

/** Sequences padded to a common width, row r on side sides[r] ('left' or 'right'), optionally wider than the longest. */
export function padBatch(seqs: readonly (readonly number[])[], sides: readonly ('left' | 'right')[], width = Math.max(...seqs.map((s) => s.length))): PaddedBatch {
  const offsets = seqs.map((s, r) => (sides[r] === 'left' ? width - s.length : 0));
  const idRows = seqs.map((s, r) => Array.from({ length: width }, (_, t) => (t >= offsets[r] && t < offsets[r] + s.length ? s[t - offsets[r]] : 0)));
  const maskRows = seqs.map((s, r) => Array.from({ length: width }, (_, t) => (t >= offsets[r] && t < offsets[r] + s.length ? 1 : 0)));
  return { ids: tf.tensor2d(idRows, undefined, 'int32'), mask: tf.tensor2d(maskRows, undefined, 'int32'), positions: positionsFromMask(maskRows), offsets, width };
}

/** [B][width] 0/1 rows marking [start, start + length) of each row's sequence, shifted by its padding offset. */
export function spanMask(spans: readonly ({ start: number; length: number } | null)[], offsets: readonly number[], width: number): number[][] {
  return spans.map((s, r) => Array.from({ length: width }, (_, t) => (s && t >= offsets[r] + s.start && t < offsets[r] + s.start + s.length ? 1 : 0)));
}

/** Whether any of `trained`'s weights differ from `original`'s. */
export function weightsMoved(original: Decoder, trained: Decoder): boolean {
  return [...trained.variables().entries()].some(([n, v]) => {
    const a = v.dataSync();
    const b = original.variables().get(n)!.dataSync();
    return a.some((x, i) => x !== b[i]);
  });
}
