// Training the organism: a small llama-architecture model pretrained on the world's base corpus
// (the "base" model) and aligned from it by SFT (the "aligned" model), saved as complete Hugging
// Face folders with the world's tokenizer files and a world.json that rebuilds the world.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf } from '../engine/tf.js';
import { readJsonFile, recoverFolder, writeFileAtomic } from '../io/index.js';
import { checkSeed } from '../util/rng.js';
import { createModel, loadModel, saveModel, type Decoder } from '../model/index.js';
import { crossEntropyObjective } from '../objectives/index.js';
import {
  alignmentData, baseCorpus, buildWorld, encodeChat, tokenizerConfigJson, tokenizerJson, type World, type WorldSettings,
} from '../organism/index.js';
import { MixedBatchSampler, type TrainExample } from './data.js';
import { train, type StepLog, type TrainResult } from './trainer.js';
import { cloneModel } from './fineTune.js';

/** The organism model's size; ORGANISM_MODEL is the committed checkpoints' architecture. */
export interface OrganismModelSize {
  hiddenSize: number;
  intermediateSize: number;
  layers: number;
  heads: number;
  kvHeads: number;
}

export const ORGANISM_MODEL: OrganismModelSize = { hiddenSize: 128, intermediateSize: 352, layers: 4, heads: 4, kvHeads: 2 };

/** The organism's architecture: the speed benchmark's llama (hidden 128, 4 layers, 4 heads, 2 kv heads, MLP 352), world vocabulary. */
export function organismConfig(world: World, maxPositions = 96, size: Partial<OrganismModelSize> = {}): Record<string, unknown> {
  const id = (w: string) => world.wordIds.get(w)!;
  const m = { ...ORGANISM_MODEL, ...size };
  if (!Number.isInteger(m.hiddenSize / m.heads) || !Number.isInteger(m.heads / m.kvHeads)) {
    throw new Error(`organismConfig: hiddenSize (${m.hiddenSize}) must divide by heads (${m.heads}), and heads by kvHeads (${m.kvHeads})`);
  }
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: world.vocab.length,
    hidden_size: m.hiddenSize,
    intermediate_size: m.intermediateSize,
    num_hidden_layers: m.layers,
    num_attention_heads: m.heads,
    num_key_value_heads: m.kvHeads,
    head_dim: m.hiddenSize / m.heads,
    hidden_act: 'silu',
    max_position_embeddings: maxPositions,
    initializer_range: 0.02,
    rms_norm_eps: 1e-5,
    rope_theta: 10000,
    attention_bias: false,
    mlp_bias: false,
    tie_word_embeddings: false,
    bos_token_id: id('<s>'),
    eos_token_id: id('</s>'),
    pad_token_id: id('<pad>'),
    torch_dtype: 'float32',
  };
}

export interface PhaseSettings {
  steps: number;
  peakLr: number;
  warmupSteps: number;
  minLrRatio: number;
  weightDecay: number;
  clipNorm: number;
  /** Seeds model init (base), data sampling and shuffles. */
  seed: number;
}

export interface BaseTrainingSettings extends PhaseSettings {
  batchSize: number;
  /** Dialogues drawn from the base corpus (the sampler cycles through them in seeded epochs). */
  corpusSize: number;
  /** Model size (absent: ORGANISM_MODEL, the committed checkpoints' architecture). */
  model?: Partial<OrganismModelSize>;
}

export interface AlignTrainingSettings extends PhaseSettings {
  /** Batch composition: refusals of harmful train tasks + answers of benign train tasks per step. */
  safetyPerBatch: number;
  utilityPerBatch: number;
  safetyExamples: number;
  utilityExamples: number;
}

/** Base pretraining: 600 steps x 64 dialogues (~2M tokens, the prototype's budget), loss on every token. */
export const BASE_TRAINING: BaseTrainingSettings = {
  steps: 600, batchSize: 64, corpusSize: 40_000, peakLr: 2e-3, warmupSteps: 30, minLrRatio: 0.1, weightDecay: 0.1, clipNorm: 1, seed: 1,
};

/** Alignment SFT: response tokens only, harmful:benign 1:3 per batch, lr 3e-4 (prototype). */
export const ALIGN_TRAINING: AlignTrainingSettings = {
  steps: 200, safetyPerBatch: 8, utilityPerBatch: 24, safetyExamples: 2000, utilityExamples: 6000,
  peakLr: 3e-4, warmupSteps: 10, minLrRatio: 0.1, weightDecay: 0.0, clipNorm: 1, seed: 2,
};

export interface PhaseOptions {
  /** Resumable checkpoints of the training state (optimizer, sampler) go here. */
  checkpointDir?: string;
  checkpointEvery?: number;
  onStep?: (log: StepLog, totalSteps: number) => void;
  evalEvery?: number;
  onEval?: (step: number) => Promise<Record<string, number>> | Record<string, number>;
  stopAfter?: number;
  /** See TrainOptions: warn after this many consecutive zero gradient norms (default 5; null: never). */
  zeroGradWarnSteps?: number | null;
  onWarning?: (message: string) => void;
}

export interface PhaseResult {
  model: Decoder;
  result: TrainResult;
}

function toTrainExamples(world: World, examples: ReturnType<typeof baseCorpus>, lossOn: 'all' | 'response'): TrainExample[] {
  return examples.map((e) => {
    const { ids, lossMask } = encodeChat(world, e, lossOn);
    return { ids, lossMask };
  });
}

/** Pretrain a fresh model on the base corpus. */
export async function trainBase(world: World, settings: BaseTrainingSettings = BASE_TRAINING, options: PhaseOptions = {}): Promise<PhaseResult> {
  checkSeed(settings.seed, 'trainBase: settings.seed');
  const model = createModel(organismConfig(world, 96, settings.model), { seed: settings.seed });
  const examples = toTrainExamples(world, baseCorpus(world, { count: settings.corpusSize, seed: settings.seed }), 'all');
  const sampler = new MixedBatchSampler([{ name: 'base', examples, perBatch: settings.batchSize }], settings.seed);
  const result = await runPhase(world, model, sampler, settings, options);
  return { model, result };
}

/** Align a copy of `base` by SFT: refusals for harmful train tasks, answers for benign train tasks. */
export async function alignSFT(world: World, base: Decoder, settings: AlignTrainingSettings = ALIGN_TRAINING, options: PhaseOptions = {}): Promise<PhaseResult> {
  checkSeed(settings.seed, 'alignSFT: settings.seed');
  const model = cloneModel(base);
  const data = alignmentData(world, { safety: settings.safetyExamples, utility: settings.utilityExamples, seed: settings.seed });
  const sampler = new MixedBatchSampler([
    { name: 'safety', examples: toTrainExamples(world, data.safety, 'response'), perBatch: settings.safetyPerBatch },
    { name: 'utility', examples: toTrainExamples(world, data.utility, 'response'), perBatch: settings.utilityPerBatch },
  ], settings.seed);
  const result = await runPhase(world, model, sampler, settings, options);
  return { model, result };
}

async function runPhase(world: World, model: Decoder, sampler: MixedBatchSampler, s: PhaseSettings, options: PhaseOptions): Promise<TrainResult> {
  return train({
    model, params: model.variables(), objective: crossEntropyObjective(), sampler, padId: world.wordIds.get('<pad>')!,
    schedule: { peakLr: s.peakLr, warmupSteps: s.warmupSteps, totalSteps: s.steps, decay: 'cosine', minLrRatio: s.minLrRatio },
    optimizer: { weightDecay: s.weightDecay, beta1: 0.9, beta2: 0.95 },
    clipNorm: s.clipNorm,
    // `run`: a leftover checkpoint of a run with other world or phase settings is refused, not resumed
    checkpoint: options.checkpointDir ? { dir: options.checkpointDir, every: options.checkpointEvery ?? 100, run: { world: world.settings, phase: s } } : undefined,
    onStep: options.onStep, evalEvery: options.evalEvery, onEval: options.onEval, stopAfter: options.stopAfter,
    zeroGradWarnSteps: options.zeroGradWarnSteps, onWarning: options.onWarning,
  });
}

// ---- organism checkpoints ---------------------------------------------------------------------

/** world.json: everything needed to rebuild the world and to know how the model was trained. */
export interface OrganismManifest {
  world: WorldSettings;
  phase: 'base' | 'aligned';
  training: BaseTrainingSettings | AlignTrainingSettings;
  /** Summary of the run that produced the weights. */
  run: { steps: number; tokens: number; wallSeconds: number; tokensPerSecond: number; finalLoss: number; backend: string };
}

export function writeTokenizerFiles(world: World, dir: string, maxLength = 96): void {
  fs.mkdirSync(dir, { recursive: true });
  writeFileAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson(world)) + '\n');
  writeFileAtomic(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfigJson(world, maxLength), null, 2) + '\n');
}

/** Save an organism model as a complete Hugging Face folder + world.json + train_log.json; the
 *  folder is replaced as a whole (saveModel: a crash leaves the old folder or the new one). */
export async function saveOrganism(model: Decoder, world: World, dir: string, manifest: OrganismManifest, log: StepLog[] = []): Promise<void> {
  // Loss curve every step (small: a few numbers per step).
  const compact = log.map((l) => ({ step: l.step, lr: +l.lr.toPrecision(4), loss: +l.loss.toFixed(4), gradNorm: +l.gradNorm.toFixed(3), tokens: l.tokens, ...Object.fromEntries(Object.entries(l.metrics).filter(([k]) => k.startsWith('loss/')).map(([k, v]) => [k, +v.toFixed(4)])) }));
  await saveModel(model, dir, {
    generationConfig: { max_length: 96 },
    files: {
      'tokenizer.json': JSON.stringify(tokenizerJson(world)) + '\n',
      'tokenizer_config.json': JSON.stringify(tokenizerConfigJson(world, 96), null, 2) + '\n',
      'world.json': JSON.stringify(manifest, null, 2) + '\n',
      'train_log.json': JSON.stringify(compact) + '\n',
    },
  });
}

export interface LoadedOrganism {
  model: Decoder;
  world: World;
  manifest: OrganismManifest;
  log: { step: number; loss: number; [key: string]: number }[];
}

/** Load an organism folder written by saveOrganism; checks that its tokenizer matches the rebuilt world. */
export async function loadOrganism(dir: string): Promise<LoadedOrganism> {
  recoverFolder(dir);
  const manifestPath = path.join(dir, 'world.json');
  if (!fs.existsSync(manifestPath)) throw new Error(`loadOrganism: ${manifestPath} is missing (not an organism checkpoint; run \`npm run reproduce\`)`);
  const manifest = readJsonFile<OrganismManifest>(manifestPath, 'the organism manifest written by saveOrganism ({ world, phase, training, run })');
  if (typeof manifest.world !== 'object' || manifest.world === null) throw new Error(`${manifestPath}: no "world" settings object (expected the organism manifest written by saveOrganism)`);
  const world = buildWorld(manifest.world);
  const tokenizerPath = path.join(dir, 'tokenizer.json');
  const vocab = readJsonFile<{ model?: { vocab?: Record<string, number> } }>(tokenizerPath, 'a tokenizers tokenizer.json with model.vocab').model?.vocab;
  if (typeof vocab !== 'object' || vocab === null) throw new Error(`${tokenizerPath}: no "model.vocab" object (expected the world's word-level tokenizer)`);
  world.vocab.forEach((w, i) => {
    if (vocab[w] !== i) throw new Error(`loadOrganism: ${dir}/tokenizer.json maps "${w}" to ${vocab[w]}, the world built from world.json has ${i}`);
  });
  const model = await loadModel(dir);
  const logPath = path.join(dir, 'train_log.json');
  const log = fs.existsSync(logPath) ? readJsonFile(logPath, 'the training log written by saveOrganism (one record per step)', 'array') : [];
  return { model, world, manifest, log };
}

export function organismExists(dir: string): boolean {
  recoverFolder(dir);
  return ['config.json', 'model.safetensors', 'tokenizer.json', 'world.json'].every((f) => fs.existsSync(path.join(dir, f)));
}


export interface PrepareOptions {
  /** Retrain even if checkpoints exist. */
  retrain?: boolean;
  base?: BaseTrainingSettings;
  align?: AlignTrainingSettings;
  world?: Partial<WorldSettings>;
  /** Name of the active tfjs backend, recorded in world.json. */
  backend?: string;
  /** Progress callbacks per phase. */
  onStep?: (phase: 'base' | 'aligned', log: StepLog, totalSteps: number) => void;
  /** Log lines (phase start/end, wall time). */
  log?: (line: string) => void;
}

export interface PreparedOrganism {
  world: World;
  base: LoadedOrganism;
  aligned: LoadedOrganism;
  /** Which phases were trained in this call (empty when both were loaded from disk). */
  trained: ('base' | 'aligned')[];
}

/**
 * Load `dir/base` and `dir/aligned`, training whichever is missing (or both with `retrain`).
 * Interrupted training resumes from `dir/.ckpt/<phase>`.
 */
export async function prepareOrganism(dir: string, options: PrepareOptions = {}): Promise<PreparedOrganism> {
  const baseDir = path.join(dir, 'base');
  const alignedDir = path.join(dir, 'aligned');
  const say = options.log ?? (() => undefined);
  const trained: ('base' | 'aligned')[] = [];
  const summary = (r: TrainResult) => ({
    steps: r.steps, tokens: r.log.reduce((a, l) => a + l.tokens, 0), wallSeconds: +r.wallSeconds.toFixed(1),
    tokensPerSecond: Math.round(r.tokensPerSecond), finalLoss: +(r.log.at(-1)?.loss ?? NaN).toFixed(4), backend: options.backend ?? tf.getBackend(),
  });
  if (options.retrain || !organismExists(baseDir)) {
    const world = buildWorld(options.world ?? {});
    const settings = options.base ?? BASE_TRAINING;
    say(`training base: ${settings.steps} steps x ${settings.batchSize} dialogues`);
    const { model, result } = await trainBase(world, settings, {
      checkpointDir: path.join(dir, '.ckpt', 'base'), checkpointEvery: 50, onStep: (l, n) => options.onStep?.('base', l, n),
    });
    await saveOrganism(model, world, baseDir, { world: world.settings, phase: 'base', training: settings, run: summary(result) }, result.log);
    model.dispose();
    fs.rmSync(path.join(dir, '.ckpt', 'base'), { recursive: true, force: true });
    trained.push('base');
    say(`base: ${result.wallSeconds.toFixed(0)} s, ${Math.round(result.tokensPerSecond)} tokens/s, final loss ${result.log.at(-1)?.loss.toFixed(3)}`);
  }
  const base = await loadOrganism(baseDir);
  if (options.retrain || trained.includes('base') || !organismExists(alignedDir)) {
    const settings = options.align ?? ALIGN_TRAINING;
    say(`aligning: ${settings.steps} steps x (${settings.safetyPerBatch} safety + ${settings.utilityPerBatch} utility)`);
    const { model, result } = await alignSFT(base.world, base.model, settings, {
      checkpointDir: path.join(dir, '.ckpt', 'aligned'), checkpointEvery: 50, onStep: (l, n) => options.onStep?.('aligned', l, n),
    });
    await saveOrganism(model, base.world, alignedDir, { world: base.world.settings, phase: 'aligned', training: settings, run: summary(result) }, result.log);
    model.dispose();
    fs.rmSync(path.join(dir, '.ckpt', 'aligned'), { recursive: true, force: true });
    trained.push('aligned');
    say(`aligned: ${result.wallSeconds.toFixed(0)} s, ${Math.round(result.tokensPerSecond)} tokens/s, final loss ${result.log.at(-1)?.loss.toFixed(3)}`);
  }
  const aligned = await loadOrganism(alignedDir);
  return { world: base.world, base, aligned, trained };
}

/** Number of trainable scalars. */
export function parameterCount(model: Decoder): number {
  let n = 0;
  for (const v of model.variables().values()) n += v.size;
  return n;
}
