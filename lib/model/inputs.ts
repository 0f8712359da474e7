// Input validation shared by every public entry point that takes token ids (Decoder.forward,
// runWithCache, runWithHooks, embed, generate's inputIds and prefill): token ids, position ids,
// the context window and padding without an attention mask. Each check names the caller, the
// argument and the offending row / position / value, so a bad input fails here with a readable
// message instead of being coerced (NaN -> 0, 46.7 -> 46, "46" -> 46) or failing deep inside a
// GatherV2 kernel ("the index value 242 is not in [0, 241]").
//
// Tensors: their values are read and checked on the backends whose data lives in host memory
// (cpu, wasm/native, tensorflow), where reading a [B, T] id tensor is a copy of B*T numbers,
// negligible next to a forward pass (the training loop calls forward with tensors every step). On
// the GPU backends (webgpu, webgl) a read would stall the pipeline, so there only the rank and
// dtype are checked and out-of-range values still fail inside the gather kernel.
import { tf } from '../engine/tf.js';

/** Backends whose tensor data is not in host memory: tensor values are not read for checks there. */
const DEVICE_BACKENDS = new Set(['webgpu', 'webgl']);

/** A [B, T] grid of ids, however it was given. */
export interface IdGrid {
  B: number;
  T: number;
  at(b: number, t: number): unknown;
}

/** How a bad value is printed: NaN, 46.7, "46" (a string), 10000000000 (not 1410065408). */
export function showValue(v: unknown): string {
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : String(v);
  if (typeof v === 'string') return `${JSON.stringify(v)} (a string)`;
  if (v === undefined) return 'undefined (missing)';
  if (v === null) return 'null';
  if (typeof v === 'bigint') return `${v}n (a bigint)`;
  if (Array.isArray(v)) return `an array (${JSON.stringify(v).slice(0, 40)})`;
  return `${String(v)} (${typeof v})`;
}

function tokenIdRule(vocabSize: number): string {
  return `token ids must be integers in [0, ${vocabSize})`;
}

function isTokenId(v: unknown, vocabSize: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < vocabSize;
}

/** Whether tensor values are read for checks on the current backend (see the file comment). */
export function tensorValuesCheckable(): boolean {
  return !DEVICE_BACKENDS.has(tf.getBackend());
}

/**
 * The [B, T] grid of `x` (number[][] or a 2-D tensor) after checking its shape, or undefined for
 * a tensor on a GPU backend (values not read). Throws for ragged, empty-row or non-array input.
 */
export function idGrid(x: unknown, caller: string, what: string): IdGrid | undefined {
  if (x instanceof tf.Tensor) {
    if (x.rank !== 2) throw new Error(`${caller}: \`${what}\` must be a 2-D [B, T] tensor, got shape [${x.shape}]`);
    if (x.dtype !== 'int32' && x.dtype !== 'float32') throw new Error(`${caller}: \`${what}\` must be an int32 (or integer-valued float32) tensor, got ${x.dtype}`);
    if (!tensorValuesCheckable()) return undefined;
    const data = x.dataSync();
    const T = x.shape[1]!;
    return { B: x.shape[0]!, T, at: (b, t) => data[b * T + t] };
  }
  if (!Array.isArray(x) || x.length === 0) throw new Error(`${caller}: \`${what}\` must be a non-empty [B, T] array (number[][]) or a 2-D tensor, got ${showValue(x)}`);
  for (let b = 0; b < x.length; b++) {
    if (!Array.isArray(x[b])) throw new Error(`${caller}: \`${what}\`[${b}] is ${showValue(x[b])}; \`${what}\` must be number[][] (one list per row) or a 2-D tensor`);
  }
  const rows = x as unknown[][];
  const T = rows[0].length;
  for (let b = 1; b < rows.length; b++) {
    if (rows[b].length !== T) throw new Error(`${caller}: \`${what}\` rows must have equal lengths (pad them and pass an attentionMask), but row ${b} has ${rows[b].length} and row 0 has ${T}`);
  }
  return { B: rows.length, T, at: (b, t) => rows[b][t] };
}

/** Check every entry of a grid is a token id in [0, vocabSize); names the first bad one. */
export function checkIdGrid(grid: IdGrid, vocabSize: number, caller: string, what: string): void {
  for (let b = 0; b < grid.B; b++) {
    for (let t = 0; t < grid.T; t++) {
      const v = grid.at(b, t);
      if (!isTokenId(v, vocabSize)) throw new Error(`${caller}: ${what}[${b}][${t}] is ${showValue(v)}; ${tokenIdRule(vocabSize)}`);
    }
  }
}

/**
 * Check token ids given as number[][] or a 2-D tensor (tensor values only where they are in host
 * memory, see the file comment). Returns the grid (undefined when the values were not read).
 */
export function checkTokenIds(x: unknown, vocabSize: number, caller: string, what = 'inputIds'): IdGrid | undefined {
  const grid = idGrid(x, caller, what);
  if (grid) checkIdGrid(grid, vocabSize, caller, what);
  return grid;
}

/** Check one list of token ids (`what` names it, e.g. "prefill[1]"). */
export function checkIdList(list: unknown, vocabSize: number, caller: string, what: string): number[] {
  if (!Array.isArray(list)) throw new Error(`${caller}: \`${what}\` must be a list of token ids, got ${showValue(list)}`);
  list.forEach((v, j) => {
    if (!isTokenId(v, vocabSize)) throw new Error(`${caller}: ${what}[${j}] is ${showValue(v)}; ${tokenIdRule(vocabSize)}`);
  });
  return list as number[];
}

/** Check position ids: integers >= 0, and < maxPositions when given (learned position embeddings). */
export function checkPositionIds(x: unknown, maxPositions: number | undefined, caller: string, why = ''): void {
  const grid = idGrid(x, caller, 'positionIds');
  if (!grid) return;
  for (let b = 0; b < grid.B; b++) {
    for (let t = 0; t < grid.T; t++) {
      const v = grid.at(b, t);
      const ok = typeof v === 'number' && Number.isInteger(v) && v >= 0 && (maxPositions === undefined || v < maxPositions);
      if (!ok) {
        const rule = maxPositions === undefined ? 'position ids must be integers >= 0' : `position ids must be integers in [0, ${maxPositions})${why}`;
        throw new Error(`${caller}: positionIds[${b}][${t}] is ${showValue(v)}; ${rule}`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// padding without an attention mask

/** Index of the first entry of `row` that is not `padId` (row.length if there is none). */
function firstNonPad(grid: IdGrid, b: number, padId: number): number {
  let t = 0;
  while (t < grid.T && grid.at(b, t) === padId) t++;
  return t;
}

const MASK_HINT = 'pass an `attentionMask` (1 = token, 0 = padding; all ones if these are real tokens)';

/**
 * generate's rule for a prompt without an attention mask whose pad id is known. Returns true when
 * the mask is to be inferred from leading pad ids (left padding, as transformers infers it), false
 * when every token is attended. Throws where padding cannot be inferred honestly:
 *  - pad id not an eos id: a pad id after a row's first real token (right padding, or padding in
 *    the middle) - the next token would be predicted from a pad position; a row of only pads;
 *  - pad id also an eos id (common: pad = eos): a row ending in it after real tokens (right
 *    padding), or rows starting with different numbers of it (left padding that cannot be told
 *    from real eos/bos tokens). An eos inside a row (a turn separator) and the same leading run in
 *    every row (eos used as bos) are taken as tokens, as transformers does.
 */
export function checkPromptPadding(grid: IdGrid, padId: number, padIsEos: boolean, caller: string, what = 'inputIds'): boolean {
  const leading: number[] = [];
  for (let b = 0; b < grid.B; b++) {
    const f = firstNonPad(grid, b, padId);
    leading.push(f);
    if (!padIsEos) {
      if (f === grid.T) throw new Error(`${caller}: ${what} row ${b} holds only the pad id ${padId}; there is nothing to continue`);
      for (let t = f + 1; t < grid.T; t++) {
        if (grid.at(b, t) === padId) {
          throw new Error(
            `${caller}: ${what}[${b}][${t}] is the pad id ${padId} after the row's first token (right padding, or padding inside the row) ` +
              `and no attentionMask was given: without one the model reads the pad tokens as text and continues after them. ` +
              `Left-pad the batch, or ${MASK_HINT}`,
          );
        }
      }
    } else if (f < grid.T && grid.at(b, grid.T - 1) === padId) {
      let start = grid.T - 1;
      while (start > f && grid.at(b, start - 1) === padId) start--;
      throw new Error(
        `${caller}: ${what}[${b}][${start}..${grid.T - 1}] are the pad id ${padId} (also an eos id) at the end of the row (right padding?) ` +
          `and no attentionMask was given: the model would continue after them. Left-pad the batch with an attentionMask, or ${MASK_HINT}`,
      );
    }
  }
  if (padIsEos && new Set(leading).size > 1) {
    const b = leading.indexOf(Math.max(...leading));
    throw new Error(
      `${caller}: ${what} row ${b} starts with ${leading[b]} pad ids (${padId}, also an eos id) and other rows with fewer (left padding?), ` +
        `and no attentionMask was given: padding cannot be told from real eos tokens, so ${MASK_HINT}`,
    );
  }
  return !padIsEos && leading.some((f) => f > 0);
}

/**
 * forward's rule (forward never infers a mask, as transformers' model() does not): a row that
 * starts with the pad id and has real tokens after it is left padding, which shifts every real
 * token's position and lets it attend to the pads - throw. Right padding is allowed: with causal
 * attention the logits at the real positions are exactly those of the unpadded rows (only the
 * logits at the pad positions are meaningless), which is how generate's own `sequences` (finished
 * rows continue with pads) are scored. Checked only when the pad id is not an eos id.
 */
export function checkForwardPadding(grid: IdGrid, padId: number, caller: string): void {
  for (let b = 0; b < grid.B; b++) {
    const f = firstNonPad(grid, b, padId);
    if (f > 0 && f < grid.T) {
      throw new Error(
        `${caller}: inputIds[${b}][0..${f - 1}] are the pad id ${padId} before the row's first token (left padding) and no attentionMask ` +
          `was given: every real token would attend to the pads and get shifted positions. ${MASK_HINT[0].toUpperCase()}${MASK_HINT.slice(1)}`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// context window

export type ContextPolicy = 'warn' | 'error' | 'allow';

/** The model facts the context check reads. */
export interface ContextModel {
  config: { modelType: string; positional: 'rope' | 'learned'; maxPositions: number };
  generationConfig?: Record<string, any>;
}

export interface ContextNeed {
  /** the longest row's prompt tokens (padding excluded) */
  prompt: number;
  /** that row's forced prefix */
  prefill: number;
  maxNewTokens: number;
}

const warnedModels = new WeakSet<object>();

/** config.json's name for the position limit. */
export function positionLimitName(cfg: ContextModel['config']): string {
  return cfg.modelType === 'gpt2' ? 'n_positions' : 'max_position_embeddings';
}

/**
 * Check prompt + prefill + maxNewTokens against the model's positions before generating.
 *  - learned absolute positions (gpt2): beyond n_positions there is no position embedding, so it
 *    is always an error (whatever the policy);
 *  - RoPE: positions past max_position_embeddings can be computed but were never trained, and
 *    generation_config.json's max_length (when given) is the checkpoint's own length limit:
 *    `policy` decides - 'warn' (default) warns once per model, 'error' throws, 'allow' is silent.
 */
export function checkContext(model: ContextModel, need: ContextNeed, policy: ContextPolicy, caller = 'generate'): void {
  if (policy !== 'warn' && policy !== 'error' && policy !== 'allow') {
    throw new Error(`${caller}: \`contextPolicy\` must be 'warn', 'error' or 'allow', got ${showValue(policy)}`);
  }
  const cfg = model.config;
  const total = need.prompt + need.prefill + need.maxNewTokens;
  const sum = `prompt ${need.prompt} + prefill ${need.prefill} + maxNewTokens ${need.maxNewTokens} = ${total} tokens`;
  if (cfg.positional === 'learned' && total > cfg.maxPositions) {
    throw new Error(
      `${caller}: ${sum} (longest row) exceed this ${cfg.modelType} model's ${positionLimitName(cfg)} ${cfg.maxPositions}: ` +
        `it has learned absolute position embeddings and none for position ${cfg.maxPositions} or later. ` +
        `Shorten the prompt or lower maxNewTokens to at most ${Math.max(0, cfg.maxPositions - need.prompt - need.prefill)}`,
    );
  }
  const over: string[] = [];
  if (cfg.positional === 'rope' && total > cfg.maxPositions) {
    over.push(`this ${cfg.modelType} model's ${positionLimitName(cfg)} ${cfg.maxPositions} (RoPE: later positions can be computed but were never trained)`);
  }
  const maxLength = model.generationConfig?.max_length;
  if (typeof maxLength === 'number' && total > maxLength) over.push(`generation_config.json's max_length ${maxLength}`);
  if (!over.length || policy === 'allow') return;
  const message = `${caller}: ${sum} (longest row) exceed ${over.join(' and ')}`;
  if (policy === 'error') throw new Error(`${message}. Shorten the input or lower maxNewTokens, or pass contextPolicy: 'allow'`);
  if (!warnedModels.has(model)) {
    warnedModels.add(model);
    console.warn(`${message}; generating anyway (contextPolicy 'warn'; shown once per model; 'error' makes it an error, 'allow' silences it)`);
  }
}

/**
 * Token rows of different lengths padded to one width with `padId`, and their attention mask (0 on
 * the pads): left padding for generation and next-token reads, right padding for teacher forcing.
 */
export function padRows(rows: readonly (readonly number[])[], padId: number, side: 'left' | 'right'): { inputIds: number[][]; attentionMask: number[][] } {
  const width = Math.max(...rows.map((r) => r.length));
  const pad = (r: readonly number[], fill: number, real: (t: number) => number) => {
    const extra = new Array<number>(width - r.length).fill(fill);
    return side === 'left' ? [...extra, ...r.map(real)] : [...r.map(real), ...extra];
  };
  return { inputIds: rows.map((r) => pad(r, padId, (t) => t)), attentionMask: rows.map((r) => pad(r, 0, () => 1)) };
}
