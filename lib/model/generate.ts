// Autoregressive generation with a KV cache, as transformers' generate does it for decoder-only
// models: left padding handled by the attention mask, position ids = cumsum(mask) - 1 (pads get 1),
// finished rows continue with the pad token, the mask grows by one column of ones per step.
import { tf } from '../engine/tf.js';
import { disposeCache, type Decoder, type ForwardOutput, type KVCache } from './decoder.js';
import { mulberry32 } from './random.js';
import { argmax, buildProcessors, logSoftmax, rankOf, sampleFromLogits, topKIndices, type SamplingOptions } from './sampling.js';

export interface Candidate {
  id: number;
  /** log-probability under the model (raw logits, before temperature / top-k / top-p) */
  logprob: number;
  /** 1 = the most likely token */
  rank: number;
}

/** What a chooser sees at each free step of each unfinished row. */
export interface StepInfo {
  row: number;
  /** 0-based index among the free (non-forced) new tokens */
  step: number;
  /** the top candidates under the model, best first (returnTopK of them, default 10) */
  candidates: Candidate[];
  /** full log-probabilities under the model [V] */
  logprobs: Float64Array;
  /** the token generation would pick (greedy or sampled) */
  proposed: number;
  /** the row so far: prompt (without its padding) + new tokens */
  tokens: number[];
}

export interface StepRecord {
  candidates: Candidate[];
  chosen: Candidate;
  /** true for tokens of the forced prefix */
  forced: boolean;
}

export interface GenerateOptions extends SamplingOptions {
  /** number of free new tokens after the forced prefix (default 20) */
  maxNewTokens?: number;
  /** sample from the processed distribution; false = greedy (default: generation_config.json's
   *  do_sample, else false; temperature/topK/topP/minP default to its values likewise) */
  doSample?: boolean;
  /** PRNG seed for sampling (default 0): same seed, same tokens */
  seed?: number;
  /** [B, T], 1 = token, 0 = (left) padding. Default: 0 where the prompt holds the pad id (when
   *  the pad id is known and is not an eos id), else all ones, as transformers infers it. */
  attentionMask?: number[][] | tf.Tensor2D;
  /** stop a row at any of these ids (default: generation_config.json's eos, else config.json's;
   *  null = never stop on eos) */
  eosTokenId?: number | number[] | null;
  /** id written after a row has finished (default: generation_config / config pad, else the first eos, else 0) */
  padTokenId?: number;
  /** stop a row once its decoded new text contains one of these (needs `tokenizer`) */
  stopStrings?: string[];
  tokenizer?: { decode(ids: number[], opts?: { skipSpecialTokens?: boolean }): string };
  /** forced response prefix (prefilling): the same ids for every row, or one list per row. Lists
   *  of different lengths are allowed: shorter ones get extra left padding in `sequences`. */
  prefill?: number[] | number[][];
  /** record the top-k candidates with log-probs and ranks at every step */
  returnTopK?: number;
  /** called at every free step of every unfinished row; return an id to override the choice */
  chooser?: (step: StepInfo) => number | undefined | void;
  /** false recomputes the whole sequence every step (slow; for checking the cache) */
  useCache?: boolean;
}

export interface GenerateOutput {
  /** prompt (with its padding) + forced prefix + free tokens, per row (as transformers returns);
   *  rows whose prefill is shorter than the longest are left-padded further */
  sequences: number[][];
  /** forced prefix + free tokens, per row */
  newTokens: number[][];
  /** why each row stopped */
  finishReason: ('eos' | 'stop_string' | 'length')[];
  /** steps[row][t], when returnTopK or chooser is given (forced tokens included, finished rows stop recording) */
  steps?: StepRecord[][];
}

function toRows(x: number[][] | tf.Tensor2D, what: string): number[][] {
  const rows = x instanceof tf.Tensor ? (x.arraySync() as number[][]) : x.map((r) => [...r]);
  if (!rows.length || !rows[0].length) throw new Error(`generate: \`${what}\` must be a non-empty [B, T] array`);
  for (const r of rows) if (r.length !== rows[0].length) throw new Error(`generate: \`${what}\` rows must have equal lengths (left-pad them), got ${r.length} and ${rows[0].length}`);
  return rows;
}

/** transformers' position ids for a (left-padded) mask: cumsum(mask) - 1, pads set to 1. */
export function positionsFromMask(mask: number[][]): number[][] {
  return mask.map((row) => {
    let c = 0;
    return row.map((m) => {
      c += m ? 1 : 0;
      return m ? c - 1 : 1;
    });
  });
}

function candidatesOf(logprobs: Float64Array, k: number): Candidate[] {
  return topKIndices(logprobs, k).map((id, i) => ({ id, logprob: logprobs[id], rank: i + 1 }));
}

export async function generate(model: Decoder, inputIds: number[][] | tf.Tensor2D, opts: GenerateOptions = {}): Promise<GenerateOutput> {
  const cfg = model.config;
  const maxNewTokens = opts.maxNewTokens ?? 20;
  if (!(Number.isInteger(maxNewTokens) && maxNewTokens >= 0)) throw new Error(`generate: \`maxNewTokens\` must be an integer >= 0, got ${maxNewTokens}`);
  if (opts.returnTopK !== undefined && !(Number.isInteger(opts.returnTopK) && opts.returnTopK > 0)) {
    throw new Error(`generate: \`returnTopK\` must be a positive integer, got ${opts.returnTopK}`);
  }
  if (opts.stopStrings?.length && !opts.tokenizer) throw new Error('generate: `stopStrings` needs `tokenizer` to decode the new tokens');
  const prompt = toRows(inputIds, 'inputIds');
  const B = prompt.length;
  // Defaults as transformers: generation_config.json, then config.json.
  const gen = model.generationConfig;
  const eosIds = new Set<number>(
    opts.eosTokenId === null ? [] : ([] as number[]).concat(opts.eosTokenId ?? gen.eos_token_id ?? cfg.eosTokenId ?? []),
  );
  const padKnown: number | undefined = opts.padTokenId ?? gen.pad_token_id ?? cfg.padTokenId;
  const padId = padKnown ?? [...eosIds][0] ?? 0;
  // Without a mask, transformers infers one when the pad id occurs in the prompt and differs
  // from eos (_prepare_attention_mask_for_generation); otherwise every token is attended.
  const inferMask = padKnown !== undefined && !eosIds.has(padKnown) && prompt.some((r) => r.includes(padKnown));
  const mask = opts.attentionMask
    ? toRows(opts.attentionMask, 'attentionMask')
    : prompt.map((r) => r.map((t) => (inferMask && t === padKnown ? 0 : 1)));
  if (mask.length !== B || mask[0].length !== prompt[0].length) throw new Error(`generate: \`attentionMask\` must be [${B}, ${prompt[0].length}] like inputIds, got [${mask.length}, ${mask[0].length}]`);
  const forced: number[][] = !opts.prefill ? prompt.map(() => []) : Array.isArray(opts.prefill[0]) ? (opts.prefill as number[][]) : prompt.map(() => opts.prefill as number[]);
  if (forced.length !== B) throw new Error(`generate: \`prefill\` must be one id list or ${B} lists (one per row), got ${forced.length} lists`);
  const F = Math.max(...forced.map((f) => f.length));
  const record = opts.returnTopK !== undefined || opts.chooser !== undefined;
  const k = opts.returnTopK ?? 10;
  // Sampling settings the caller leaves out come from generation_config.json, as in transformers
  // (do_sample, temperature, top_k, top_p, min_p). transformers' class default top_k = 50, which it
  // applies when sampling and the file sets none, is not applied here: pass topK to match it.
  const doSample = opts.doSample ?? gen.do_sample ?? false;
  const sampling = {
    temperature: opts.temperature ?? gen.temperature, topK: opts.topK ?? gen.top_k, topP: opts.topP ?? gen.top_p, minP: opts.minP ?? gen.min_p,
  };
  const processors = doSample ? buildProcessors(sampling) : [];
  const rand = mulberry32(opts.seed ?? 0);
  const useCache = opts.useCache ?? true;

  // Rows with shorter forced prefixes get extra left padding, so that prompt + prefix ends at the
  // same column in every row and one pass scores all forced tokens.
  const extraPad = forced.map((f) => F - f.length);
  const sequences = prompt.map((r, b) => [...Array(extraPad[b]).fill(padId), ...r, ...forced[b]]);
  for (let b = 0; b < B; b++) mask[b] = [...Array(extraPad[b]).fill(0), ...mask[b], ...forced[b].map(() => 1)];
  const newTokens: number[][] = prompt.map(() => []);
  const steps: StepRecord[][] = prompt.map(() => []);
  const finished = new Array<boolean>(B).fill(false);
  const finishReason: GenerateOutput['finishReason'] = new Array(B).fill('length');
  const unpadded = (b: number) => sequences[b].filter((_, t) => mask[b][t] === 1);

  // Append `tokens` [B, n] to every row and run the model; return the logits rows of the last
  // `keep` positions. With the cache only the new tokens are fed (the whole row on the first call).
  let cache: KVCache | undefined;
  const step = (tokens: number[][], keep: number): Float32Array[][] => {
    for (let b = 0; b < B; b++) {
      for (const t of tokens[b]) {
        sequences[b].push(t);
        mask[b].push(1);
      }
    }
    const n = tokens[0].length;
    const positions = positionsFromMask(mask);
    let out: ForwardOutput;
    if (useCache) {
      const fresh = cache === undefined;
      const feed = fresh ? sequences : sequences.map((s) => s.slice(s.length - n));
      const pos = fresh ? positions : positions.map((p) => p.slice(p.length - n));
      out = model.forward(feed, { attentionMask: mask, positionIds: pos, cache, useCache: true, logitsToKeep: keep });
      disposeCache(cache);
      cache = out.cache;
    } else {
      out = model.forward(sequences, { attentionMask: mask, positionIds: positions, logitsToKeep: keep });
    }
    const V = out.logits.shape[2];
    const data = out.logits.dataSync() as Float32Array;
    out.logits.dispose();
    return Array.from({ length: B }, (_, b) => Array.from({ length: keep }, (_, j) => data.subarray((b * keep + j) * V, (b * keep + j + 1) * V)));
  };

  try {
    // Prompt + forced prefix in one pass: the logits at the last F + 1 positions score the
    // forced tokens (row b's start at extraPad[b]) and propose the first free one.
    let rows = step(prompt.map(() => []), F + 1);
    if (record) {
      for (let b = 0; b < B; b++) {
        for (let j = 0; j < forced[b].length; j++) {
          const lp = logSoftmax(rows[b][extraPad[b] + j]);
          const id = forced[b][j];
          steps[b].push({ candidates: candidatesOf(lp, k), chosen: { id, logprob: lp[id], rank: rankOf(lp, id) }, forced: true });
        }
      }
    }
    for (let b = 0; b < B; b++) newTokens[b].push(...forced[b]);
    let last = rows.map((r) => r[F]);

    for (let s = 0; s < maxNewTokens; s++) {
      const next: number[] = [];
      for (let b = 0; b < B; b++) {
        if (finished[b]) {
          next.push(padId);
          continue;
        }
        let processed: Float32Array = last[b];
        for (const p of processors) processed = p(processed);
        let id = doSample ? sampleFromLogits(processed, rand()) : argmax(processed);
        if (record) {
          const lp = logSoftmax(last[b]);
          const candidates = candidatesOf(lp, k);
          if (opts.chooser) {
            const picked = opts.chooser({ row: b, step: s, candidates, logprobs: lp, proposed: id, tokens: unpadded(b) });
            if (picked !== undefined && picked !== null) {
              if (!(Number.isInteger(picked) && picked >= 0 && picked < lp.length)) throw new Error(`generate: chooser returned ${picked}, expected a token id in [0, ${lp.length})`);
              id = picked;
            }
          }
          steps[b].push({ candidates, chosen: { id, logprob: lp[id], rank: rankOf(lp, id) }, forced: false });
        }
        next.push(id);
      }
      for (let b = 0; b < B; b++) {
        if (finished[b]) continue;
        newTokens[b].push(next[b]);
        if (eosIds.has(next[b])) {
          finished[b] = true;
          finishReason[b] = 'eos';
        } else if (opts.stopStrings?.length) {
          // A stop string may start inside the forced prefix but must end in generated text (a
          // prefix that itself contains one does not stop generation before it starts).
          const text = opts.tokenizer!.decode(newTokens[b]);
          const forcedLength = forced[b].length ? opts.tokenizer!.decode(forced[b]).length : 0;
          if (opts.stopStrings.some((ss) => text.slice(Math.max(0, forcedLength - ss.length + 1)).includes(ss))) {
            finished[b] = true;
            finishReason[b] = 'stop_string';
          }
        }
      }
      if (s === maxNewTokens - 1 || finished.every(Boolean)) {
        // rows finished earlier get the pad id, so all sequences keep equal length (as transformers)
        for (let b = 0; b < B; b++) sequences[b].push(next[b]);
        break;
      }
      rows = step(next.map((t) => [t]), 1);
      last = rows.map((r) => r[0]);
    }
    return { sequences, newTokens, finishReason, ...(record ? { steps } : {}) };
  } finally {
    disposeCache(cache);
  }
}
