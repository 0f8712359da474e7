// Autoregressive generation with a KV cache, as transformers' generate does it for decoder-only
// models: left padding handled by the attention mask, position ids = cumsum(mask) - 1 (pads get 1),
// finished rows continue with the pad token, the mask grows by one column of ones per step.
import { tf } from '../engine/tf.js';
import { disposeCache, type Decoder, type ForwardOutput, type KVCache } from './decoder.js';
import { checkContext, checkIdList, checkPromptPadding, checkTokenIds, showValue, type ContextPolicy } from './inputs.js';
import { mulberry32 } from './random.js';
import { checkSeed } from '../util/rng.js';
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
  /** number of free new tokens after the forced prefix (default: generation_config.json's
   *  max_new_tokens, else its max_length minus the longest row's prompt + prefill, else 20) */
  maxNewTokens?: number;
  /** what to do when prompt + prefill + maxNewTokens (longest row) passes a RoPE model's
   *  max_position_embeddings or generation_config.json's max_length: 'warn' once per model
   *  (default), 'error', or 'allow'. Past a learned-position model's n_positions (gpt2) it is
   *  always an error: there are no embeddings for those positions. */
  contextPolicy?: ContextPolicy;
  /** sample from the processed distribution; false = greedy (default: generation_config.json's
   *  do_sample, else false; temperature/topK/topP/minP default to its values likewise) */
  doSample?: boolean;
  /** PRNG seed for sampling (default 0), an integer: same seed, same tokens */
  seed?: number;
  /** [B, T], 1 = token, 0 = (left) padding. Default, when the pad id is known (padTokenId,
   *  generation_config or config.json): 0 for the pad ids a row starts with (left padding, as
   *  transformers infers it) if the pad id is not an eos id, else all ones; a pad id after a row's
   *  first token (right padding) or an ambiguous pad = eos layout is an error asking for a mask.
   *  Without a known pad id: all ones. */
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
  if (x instanceof tf.Tensor && x.rank !== 2) throw new Error(`generate: \`${what}\` must be a 2-D [B, T] tensor, got shape [${x.shape}]`);
  if (!(x instanceof tf.Tensor) && !(Array.isArray(x) && x.every((r) => Array.isArray(r)))) {
    throw new Error(`generate: \`${what}\` must be a non-empty [B, T] array (number[][]) or a 2-D tensor, got ${showValue(x)}`);
  }
  const rows = x instanceof tf.Tensor ? (x.arraySync() as number[][]) : x.map((r) => [...r]);
  if (!rows.length || !rows[0].length) throw new Error(`generate: \`${what}\` must be a non-empty [B, T] array`);
  for (const r of rows) if (r.length !== rows[0].length) throw new Error(`generate: \`${what}\` rows must have equal lengths (left-pad them), got ${r.length} and ${rows[0].length}`);
  return rows;
}

/** An id option (padTokenId, eos ids): an integer, and a token id when it is fed to the model. */
function checkIdOption(v: unknown, name: string, vocabSize?: number): number {
  const ok = typeof v === 'number' && Number.isInteger(v) && v >= 0 && (vocabSize === undefined || v < vocabSize);
  if (!ok) throw new Error(`generate: \`${name}\` is ${showValue(v)}; it must be an integer${vocabSize === undefined ? ' >= 0' : ` token id in [0, ${vocabSize})`}`);
  return v as number;
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

/** transformers' length defaults from generation_config.json: max_new_tokens, else max_length
 *  (a total length) minus the longest row's prompt + prefill, else 20 new tokens. */
function defaultMaxNewTokens(gen: Record<string, any>, longest: number): number {
  if (gen.max_new_tokens !== undefined && gen.max_new_tokens !== null) {
    if (!(Number.isInteger(gen.max_new_tokens) && gen.max_new_tokens >= 0)) throw new Error(`generate: generation_config.json's max_new_tokens must be an integer >= 0, got ${showValue(gen.max_new_tokens)}`);
    return gen.max_new_tokens;
  }
  if (gen.max_length !== undefined && gen.max_length !== null) {
    if (!(Number.isInteger(gen.max_length) && gen.max_length > 0)) throw new Error(`generate: generation_config.json's max_length must be a positive integer, got ${showValue(gen.max_length)}`);
    if (longest > gen.max_length) {
      throw new Error(
        `generate: the longest row's prompt + prefill (${longest} tokens) already exceeds generation_config.json's max_length ${gen.max_length}; ` +
          'shorten it, or pass maxNewTokens to generate anyway',
      );
    }
    return gen.max_length - longest;
  }
  return 20;
}

export async function generate(model: Decoder, inputIds: number[][] | tf.Tensor2D, opts: GenerateOptions = {}): Promise<GenerateOutput> {
  const cfg = model.config;
  const V = cfg.vocabSize;
  if (opts.maxNewTokens !== undefined && !(Number.isInteger(opts.maxNewTokens) && opts.maxNewTokens >= 0)) {
    throw new Error(`generate: \`maxNewTokens\` must be an integer >= 0, got ${showValue(opts.maxNewTokens)}`);
  }
  if (opts.returnTopK !== undefined && !(Number.isInteger(opts.returnTopK) && opts.returnTopK > 0)) {
    throw new Error(`generate: \`returnTopK\` must be a positive integer, got ${opts.returnTopK}`);
  }
  if (opts.stopStrings?.length && !opts.tokenizer) throw new Error('generate: `stopStrings` needs `tokenizer` to decode the new tokens');
  // Every sampling draw comes from this seed: NaN, 0.5 or "abc" must not quietly act as seed 0.
  const seed = checkSeed(opts.seed ?? 0, 'seed');
  const prompt = toRows(inputIds, 'inputIds');
  checkTokenIds(prompt, V, 'generate', 'inputIds');
  const B = prompt.length;
  // Defaults as transformers: generation_config.json, then config.json.
  const gen = model.generationConfig;
  const eosIds = new Set<number>(
    opts.eosTokenId === null
      ? []
      : ([] as unknown[]).concat(opts.eosTokenId ?? gen.eos_token_id ?? cfg.eosTokenId ?? []).map((id) => checkIdOption(id, 'eosTokenId')),
  );
  const padKnown: number | undefined =
    opts.padTokenId !== undefined ? checkIdOption(opts.padTokenId, 'padTokenId', V) : (gen.pad_token_id ?? cfg.padTokenId ?? undefined);
  if (padKnown !== undefined) checkIdOption(padKnown, 'padTokenId (the pad_token_id of generation_config.json / config.json)', V);
  const padId = padKnown ?? [...eosIds].find((id) => id < V) ?? 0;
  // Without a mask: leading pad ids are left padding and get mask 0 (transformers'
  // _prepare_attention_mask_for_generation, when the pad id is not an eos id); right padding and
  // pad = eos layouts that cannot be told from real tokens are errors (lib/model/inputs.ts).
  const promptGrid = { B, T: prompt[0].length, at: (b: number, t: number) => prompt[b][t] };
  const inferMask = !opts.attentionMask && padKnown !== undefined && checkPromptPadding(promptGrid, padKnown, eosIds.has(padKnown), 'generate');
  const mask = opts.attentionMask
    ? toRows(opts.attentionMask, 'attentionMask')
    : prompt.map((r) => {
        let leading = inferMask;
        return r.map((t) => (leading && t === padKnown ? 0 : ((leading = false), 1)));
      });
  if (mask.length !== B || mask[0].length !== prompt[0].length) throw new Error(`generate: \`attentionMask\` must be [${B}, ${prompt[0].length}] like inputIds, got [${mask.length}, ${mask[0].length}]`);
  const prefill: unknown = opts.prefill;
  if (prefill !== undefined && !Array.isArray(prefill)) throw new Error(`generate: \`prefill\` must be a list of token ids or one list per row, got ${showValue(prefill)}`);
  const perRow = Array.isArray(prefill) && prefill.length > 0 && Array.isArray(prefill[0]);
  const shared = prefill && !perRow ? checkIdList(prefill, V, 'generate', 'prefill') : [];
  const forced: number[][] = perRow ? (prefill as unknown[]).map((f, b) => checkIdList(f, V, 'generate', `prefill[${b}]`)) : prompt.map(() => shared);
  if (forced.length !== B) throw new Error(`generate: \`prefill\` must be one id list or ${B} lists (one per row), got ${forced.length} lists`);
  const F = Math.max(...forced.map((f) => f.length));
  // The longest row in positions (padding excluded): what the context limits apply to.
  const used = mask.map((m, b) => m.filter((x) => x !== 0).length + forced[b].length);
  const longest = used.indexOf(Math.max(...used));
  const maxNewTokens = opts.maxNewTokens ?? defaultMaxNewTokens(gen, used[longest]);
  checkContext(model, { prompt: used[longest] - forced[longest].length, prefill: forced[longest].length, maxNewTokens }, opts.contextPolicy ?? 'warn');
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
  const rand = mulberry32(seed);
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
