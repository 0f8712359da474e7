// The learned RAP helper, trained as Vega & Singh's train_auto_rap.py trains theirs: a token
// classifier (a two-class linear head on the last position's final hidden state, as
// AutoModelForTokenClassification with the loss on the last token only) that reads
// prompt + response prefix and says whether the prefix is still harmful.
//
// Training data (make_rap_dataset.py + get_prepared_batch), one example per draw, 50/50:
//   label 1: prompt + the first L tokens of the harmful reference answer followed by the
//            end-of-response id (L uniform in 1..|answer + eos|, so "the answer is complete" is a
//            harmful prefix too and automated RAP can end on eos);
//   label 0: prompt + the first L tokens of the answer (L in 1..|answer|) + 1-5 tokens of the
//            target's own continuation there. Its first token is drawn uniformly from the target's
//            top-k (default 20) at that point other than the answer's own next token (the authors
//            start their safe continuations from tokens common in the target's top-20 lists), the
//            rest is the target's greedy continuation (up to and including an eos).
// The authors draw L from [min(10, |h|), |h|] or cut after a sentence; here every prefix length
// is drawn, since RAP queries prefixes from the short prefill on. Their helper is a separately
// pretrained LM fine-tuned in full (lr 2e-5, 10 epochs, linear decay); ours is, by default, a copy
// of the target's own model (`backbone: 'copy'`), or a fresh small llama on the target's vocabulary
// (`'fresh'`), or any Decoder with the target's vocabulary; `freezeBackbone` trains the head alone
// (a linear probe). Training runs through lib/train's loop (AdamW, linear decay, clipping 1.0).
// The helper is bound to the target whose tokens it reads (prompt ids come from target.promptIds).

import * as path from 'node:path';
import { tf } from '../engine/index.js';
import { readJsonFile } from '../io/index.js';
import { checkBehaviours, harmfulResponseOf, type HarmfulBehaviour, type Target } from '../metrics/index.js';
import { createModel, loadModel, padRows, saveModel, type Decoder } from '../model/index.js';
import { progress, type ProgressOptions } from '../report/index.js';
import { cloneModel, MixedBatchSampler, train, type TrainExample, type TrainResult } from '../train/index.js';
import type { Objective } from '../objectives/index.js';
import { checkSeed, Rng } from '../util/rng.js';
import { nextTokenCandidates, RAP_HARMFUL_THRESHOLD, type RapHelper, type RapHelperQuery } from './rap.js';

// ---------------------------------------------------------------------------------------------
// the classifier

/** The two-class head: logits = h_last @ weight + bias; class 1 = harmful. */
export interface RapHead {
  /** [dModel, 2] */
  weight: tf.Variable;
  /** [2] */
  bias: tf.Variable;
}

export interface LearnedRapHelper extends RapHelper {
  readonly target: Target;
  readonly backbone: Decoder;
  readonly head: RapHead;
  /** P(harmful) of each full sequence (prompt + response prefix + candidate), read at its last token. */
  scoreSequences(sequences: readonly (readonly number[])[]): number[];
  /** Frees the head, and the backbone when the helper owns it (not when it is the target's own model). */
  dispose(): void;
}

let headCounter = 0;

function makeHead(dModel: number, seed: number, values?: { weight: number[]; bias: number[] }): RapHead {
  const id = headCounter++;
  const rng = new Rng(`rap-head:${seed}`);
  // Small normal init (Box-Muller), as transformers' classifier heads (std 0.02).
  const init = values?.weight ?? Array.from({ length: dModel * 2 }, () => 0.02 * Math.sqrt(-2 * Math.log(1 - rng.next())) * Math.cos(2 * Math.PI * rng.next()));
  return tf.tidy(() => ({
    weight: tf.variable(tf.tensor2d(init, [dModel, 2]), true, `rap_head${id}/weight`),
    bias: tf.variable(tf.tensor1d(values?.bias ?? [0, 0]), true, `rap_head${id}/bias`),
  }));
}

/** Class logits [B, 2] at position lastIndex[b] of each (right-padded) row. Differentiable. */
function classifierLogits(backbone: Decoder, head: RapHead, inputIds: tf.Tensor2D, attentionMask: tf.Tensor2D, lastIndex: tf.Tensor1D): tf.Tensor2D {
  const { hiddenStates } = backbone.forward(inputIds, { attentionMask, outputHiddenStates: true, logitsToKeep: 1 });
  const h = hiddenStates![hiddenStates!.length - 1]; // [B, T, D], after the final norm
  const [B, T, D] = h.shape;
  const flat = tf.reshape(h, [B * T, D]);
  const at = tf.add(tf.mul(tf.range(0, B, 1, 'int32'), tf.scalar(T, 'int32')), lastIndex);
  return tf.add(tf.matMul(tf.gather(flat, at), head.weight), head.bias) as tf.Tensor2D;
}

function rightPadded(sequences: readonly (readonly number[])[], padId: number) {
  const { inputIds, attentionMask } = padRows(sequences, padId, 'right');
  return {
    ids: tf.tensor2d(inputIds, undefined, 'int32'),
    mask: tf.tensor2d(attentionMask, undefined, 'int32'),
    last: tf.tensor1d(sequences.map((s) => s.length - 1), 'int32'),
  };
}

/** A helper from a trained backbone and head, reading `target`'s tokens. */
export function learnedRapHelper(target: Target, backbone: Decoder, head: RapHead, options: { batchSize?: number; ownsBackbone?: boolean; name?: string } = {}): LearnedRapHelper {
  if (backbone.config.vocabSize !== target.model.config.vocabSize) {
    throw new Error(`learnedRapHelper: the backbone's vocabulary (${backbone.config.vocabSize}) must be the target's (${target.model.config.vocabSize}): the helper reads the target's token ids`);
  }
  if (head.weight.shape[0] !== backbone.config.dModel || head.weight.shape[1] !== 2) {
    throw new Error(`learnedRapHelper: the head weight must be [${backbone.config.dModel}, 2] (dModel, classes), but is [${head.weight.shape}]`);
  }
  const batchSize = options.batchSize ?? 64;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`learnedRapHelper: \`batchSize\` must be a positive integer, but is ${batchSize}`);
  const prompts = new Map<string, number[]>();
  const promptOf = (request: string) => {
    let ids = prompts.get(request);
    if (!ids) prompts.set(request, (ids = target.promptIds(request)));
    return ids;
  };
  const scoreSequences = (sequences: readonly (readonly number[])[]): number[] => {
    const out: number[] = [];
    for (let start = 0; start < sequences.length; start += batchSize) {
      const chunk = sequences.slice(start, start + batchSize);
      const probs = tf.tidy(() => {
        const { ids, mask, last } = rightPadded(chunk, target.padTokenId);
        return tf.softmax(classifierLogits(backbone, head, ids, mask, last)).arraySync() as number[][];
      });
      for (const p of probs) out.push(p[1]);
    }
    return out;
  };
  return {
    name: options.name ?? 'learned',
    target, backbone, head, scoreSequences,
    label(queries: RapHelperQuery[]) {
      const sequences = queries.flatMap((q) => {
        const base = [...promptOf(q.behaviour.request), ...q.prefix];
        return q.candidates.map((c) => [...base, c]);
      });
      const scores = scoreSequences(sequences);
      let at = 0;
      return queries.map((q) => q.candidates.map(() => scores[at++]));
    },
    dispose() {
      head.weight.dispose();
      head.bias.dispose();
      if (options.ownsBackbone) backbone.dispose();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// training data

export interface RapHelperDataOptions {
  /** Examples drawn per behaviour (default 32), half of each label on average. */
  examplesPerBehaviour?: number;
  /** Most tokens of the target's own continuation in a label-0 example (default 5). */
  maxSafeTokens?: number;
  /** The first continuation token is drawn from the target's top-k there (default 20). */
  safeTopK?: number;
  seed?: number;
}

export interface RapHelperExample {
  behaviourId: string;
  /** prompt + harmful prefix (+ safe continuation) */
  ids: number[];
  /** 1 = harmful prefix, 0 = harmful prefix + the target's own continuation */
  label: 0 | 1;
  promptLength: number;
  /** Tokens of the harmful answer (+ eos) in the example. */
  harmfulTokens: number;
  /** The target's continuation appended (empty for label 1). */
  safeIds: number[];
}

function checkOptionInt(value: unknown, option: string, where: string, min: number): void {
  if (value !== undefined && (typeof value !== 'number' || !Number.isInteger(value) || value < min)) {
    throw new Error(`${where}: \`${option}\` must be an integer >= ${min}, but is ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`);
  }
}

/** The helper's training examples from a target and harmful behaviours with reference answers (see the file comment). */
export function rapHelperData(target: Target, behaviours: readonly HarmfulBehaviour[], options: RapHelperDataOptions = {}): RapHelperExample[] {
  const where = 'rapHelperData';
  checkBehaviours(behaviours, where);
  checkOptionInt(options.examplesPerBehaviour, 'examplesPerBehaviour', where, 1);
  checkOptionInt(options.maxSafeTokens, 'maxSafeTokens', where, 1);
  checkOptionInt(options.safeTopK, 'safeTopK', where, 2);
  const perBehaviour = options.examplesPerBehaviour ?? 32;
  const maxSafe = options.maxSafeTokens ?? 5;
  const safeTopK = Math.min(options.safeTopK ?? 20, target.model.config.vocabSize);
  const seed = checkSeed(options.seed ?? 0, `${where}: seed`);
  const rng = new Rng(`rap-helper-data:${seed}`);
  const eos = target.eosTokenIds[0];
  const examples: RapHelperExample[] = [];
  const pending: { example: RapHelperExample; answer: number[]; n: number; u: number }[] = [];
  for (const b of behaviours) {
    const prompt = target.promptIds(b.request);
    const answer = target.responseIds(harmfulResponseOf(b, where));
    if (answer.length === 0) throw new Error(`${where}: the harmful answer of behaviour "${b.id}" encodes to no tokens`);
    const reference = [...answer, eos];
    for (let e = 0; e < perBehaviour; e++) {
      const safe = rng.next() < 0.5;
      const L = 1 + rng.int(safe ? answer.length : reference.length);
      const example: RapHelperExample = { behaviourId: b.id, ids: [...prompt, ...reference.slice(0, L)], label: safe ? 0 : 1, promptLength: prompt.length, harmfulTokens: L, safeIds: [] };
      examples.push(example);
      if (safe) pending.push({ example, answer: reference, n: 1 + rng.int(maxSafe), u: rng.next() });
    }
  }
  // The first continuation token: any of the target's top-k other than the answer's own next token.
  const firsts = nextTokenCandidates(target.model, pending.map((q) => q.example.ids), target.padTokenId, safeTopK);
  pending.forEach((q, i) => {
    const options = firsts[i].filter((c) => c.id !== q.answer[q.example.harmfulTokens]);
    q.example.safeIds.push(options[Math.floor(q.u * options.length)].id);
  });
  // Then greedy, up to n tokens in all (stopping after an eos).
  const eosIds = new Set(target.eosTokenIds);
  for (;;) {
    const open = pending.filter((q) => q.example.safeIds.length < q.n && !eosIds.has(q.example.safeIds[q.example.safeIds.length - 1]));
    if (open.length === 0) break;
    const next = nextTokenCandidates(target.model, open.map((q) => [...q.example.ids, ...q.example.safeIds]), target.padTokenId, 1);
    open.forEach((q, i) => q.example.safeIds.push(next[i][0].id));
  }
  for (const q of pending) q.example.ids.push(...q.example.safeIds);
  return examples;
}

// ---------------------------------------------------------------------------------------------
// training

export interface RapHelperTrainOptions extends RapHelperDataOptions {
  /** 'copy' (default): a copy of the target's model; 'fresh': a small llama on the target's vocabulary; or a Decoder (copied unless frozen). */
  backbone?: 'copy' | 'fresh' | Decoder;
  /** Train the head only (a linear probe on the backbone's final hidden state). Default false. */
  freezeBackbone?: boolean;
  /** Optimizer steps (default 200). */
  steps?: number;
  /** Examples per step (default 16). */
  batchSize?: number;
  /** Peak learning rate, decayed linearly to 0 (default 1e-3). */
  lr?: number;
  warmupSteps?: number;
  weightDecay?: number;
  /** Sequences per forward when the trained helper scores candidates (default 64). */
  evalBatchSize?: number;
  /** Progress bar options, or false for none. */
  progress?: ProgressOptions | false;
}

export interface RapHelperTraining {
  helper: LearnedRapHelper;
  result: TrainResult;
  /** The training examples and the trained helper's accuracy on them. */
  data: RapHelperExample[];
  accuracy: number;
}

/** The HF config of the 'fresh' backbone: a small llama on the target's vocabulary. */
export function rapHelperConfig(target: Target): Record<string, unknown> {
  const cfg = target.model.config;
  return {
    architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: cfg.vocabSize, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2,
    num_attention_heads: 4, num_key_value_heads: 2, head_dim: 16, hidden_act: 'silu', max_position_embeddings: cfg.maxPositions, initializer_range: 0.02,
    rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: true, pad_token_id: target.padTokenId, eos_token_id: target.eosTokenIds[0], torch_dtype: 'float32',
  };
}

function classifierObjective(backbone: Decoder, head: RapHead): Objective {
  return {
    name: 'rap-helper-last-token-ce',
    compute(_model, batch) {
      const labels = batch.extras.labels as tf.Tensor1D;
      const logits = classifierLogits(backbone, head, batch.inputIds, batch.attentionMask, batch.extras.lastIndex as tf.Tensor1D);
      const loss = tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(labels, 2), tf.logSoftmax(logits)), 1))) as tf.Scalar;
      const accuracy = tf.mean(tf.cast(tf.equal(tf.argMax(logits, 1), labels), 'float32')) as tf.Scalar;
      return { loss, metrics: { accuracy } };
    },
  };
}

/** Build the helper's data from `target` and `behaviours`, and train the classifier (see the file comment). */
export async function trainRapHelper(target: Target, behaviours: readonly HarmfulBehaviour[], options: RapHelperTrainOptions = {}): Promise<RapHelperTraining> {
  const where = 'trainRapHelper';
  checkOptionInt(options.steps, 'steps', where, 1);
  checkOptionInt(options.batchSize, 'batchSize', where, 1);
  checkOptionInt(options.warmupSteps, 'warmupSteps', where, 0);
  const lr = options.lr ?? 1e-3;
  if (!(typeof lr === 'number' && lr > 0 && Number.isFinite(lr))) throw new Error(`${where}: \`lr\` must be a positive number, but is ${lr}`);
  const seed = checkSeed(options.seed ?? 0, `${where}: seed`);
  const spec = options.backbone ?? 'copy';
  if (spec !== 'copy' && spec !== 'fresh' && typeof (spec as Decoder)?.forward !== 'function') throw new Error(`${where}: \`backbone\` must be 'copy', 'fresh' or a Decoder, but is ${JSON.stringify(spec)}`);
  const frozen = options.freezeBackbone ?? false;
  const data = rapHelperData(target, behaviours, options);
  const steps = options.steps ?? 200;

  const source = spec === 'copy' ? target.model : spec === 'fresh' ? null : spec;
  // A frozen backbone is used as it is (never modified); a trained one is always our own copy.
  const backbone = source === null ? createModel(rapHelperConfig(target), { seed }) : frozen ? source : cloneModel(source, seed);
  const owns = backbone !== source;
  if (backbone.config.vocabSize !== target.model.config.vocabSize) {
    if (owns) backbone.dispose();
    throw new Error(`${where}: the backbone's vocabulary (${backbone.config.vocabSize}) must be the target's (${target.model.config.vocabSize})`);
  }
  const head = makeHead(backbone.config.dModel, seed);
  const params = new Map<string, tf.Variable>();
  if (!frozen) {
    // An untied unembedding gets no gradient (the classifier never reads the LM logits).
    const unembedding = backbone.config.tieEmbeddings ? null : backbone.unembeddingMatrix();
    for (const [name, v] of backbone.variables()) if (v !== unembedding) params.set(name, v);
  }
  params.set('rap_head.weight', head.weight);
  params.set('rap_head.bias', head.bias);
  const examples: TrainExample[] = data.map((d) => ({ ids: d.ids, lossMask: d.ids.map(() => 0), extras: { label: d.label } }));
  const bar = options.progress === false ? null : progress(steps, { label: 'rap helper', unit: 'steps', ...(options.progress ?? {}) });
  try {
    const result = await train({
      model: backbone, params, objective: classifierObjective(backbone, head),
      sampler: new MixedBatchSampler([{ name: 'rap-helper', examples, perBatch: options.batchSize ?? 16 }], seed), padId: target.padTokenId,
      schedule: { peakLr: lr, warmupSteps: options.warmupSteps ?? 0, totalSteps: steps, decay: 'linear', minLrRatio: 0 },
      optimizer: { weightDecay: options.weightDecay ?? 0.01 }, clipNorm: 1,
      batchExtras: (batch) => ({
        labels: tf.tensor1d(batch.map((e) => e.extras!.label as number), 'int32'),
        lastIndex: tf.tensor1d(batch.map((e) => e.ids.length - 1), 'int32'),
      }),
      onStep: (log) => bar?.tick(1, { loss: log.loss.toFixed(4), acc: (log.metrics.accuracy ?? 0).toFixed(2) }),
    });
    bar?.done();
    const helper = learnedRapHelper(target, backbone, head, { ownsBackbone: owns, batchSize: options.evalBatchSize });
    const scores = helper.scoreSequences(data.map((d) => d.ids));
    const accuracy = scores.filter((s, i) => (s > RAP_HARMFUL_THRESHOLD ? 1 : 0) === data[i].label).length / data.length;
    return { helper, result, data, accuracy };
  } catch (e) {
    head.weight.dispose();
    head.bias.dispose();
    if (owns) backbone.dispose();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// save and load

const HEAD_FILE = 'rap_helper.json';
const HEAD_WHAT = 'the RAP helper head written by saveRapHelper ({ format, dModel, weight, bias })';

/** Write the helper as a model folder (the backbone, loadable by transformers) plus rap_helper.json (the head). */
export async function saveRapHelper(helper: LearnedRapHelper, dir: string): Promise<void> {
  const head = {
    format: 'deepalign/rap-helper', version: 1, classes: ['not harmful', 'harmful'], dModel: helper.backbone.config.dModel,
    weight: Array.from(helper.head.weight.dataSync()), bias: Array.from(helper.head.bias.dataSync()),
  };
  await saveModel(helper.backbone, dir, { files: { [HEAD_FILE]: JSON.stringify(head) + '\n' } });
}

/** Load a helper saved by saveRapHelper, bound to `target` (which must have the vocabulary it was trained on). */
export async function loadRapHelper(dir: string, target: Target, options: { batchSize?: number } = {}): Promise<LearnedRapHelper> {
  const file = path.join(dir, HEAD_FILE);
  const json = readJsonFile<{ format?: string; dModel?: number; weight?: number[]; bias?: number[] }>(file, HEAD_WHAT);
  const backbone = await loadModel(dir);
  const D = backbone.config.dModel;
  const ok = json.format === 'deepalign/rap-helper' && json.dModel === D && Array.isArray(json.weight) && json.weight.length === 2 * D
    && Array.isArray(json.bias) && json.bias.length === 2 && [...json.weight, ...json.bias].every((x) => typeof x === 'number' && Number.isFinite(x));
  if (!ok) {
    backbone.dispose();
    throw new Error(`${file}: expected ${HEAD_WHAT} with dModel ${D} (the model's), ${2 * D} weights and 2 biases, all finite numbers`);
  }
  const head = makeHead(D, 0, { weight: json.weight!, bias: json.bias! });
  try {
    return learnedRapHelper(target, backbone, head, { ownsBackbone: true, batchSize: options.batchSize });
  } catch (e) {
    head.weight.dispose();
    head.bias.dispose();
    backbone.dispose();
    throw e;
  }
}
