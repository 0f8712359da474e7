// `deepalign finetune`: Qi et al.'s fine-tuning attacks (Section 4, notebook 06) on any checkpoint.
// A copy of --model is fine-tuned on (request, response) pairs (harmful examples, identity
// shifting, a backdoor, benign data: a chat JSONL or any data set with answers; the organism's own
// attack sets by default) and its harmful rate is measured with the judge before, during (--eval-at)
// and after, its utility before and after.
//
// This file also holds the training machinery every training experiment of the CLI shares
// (finetune, constrained-sft, augment, presto, worst-insertion, derta):
// - the flags of training (LoRA, checkpoint cadence, saving) and of evaluation;
// - resumable training: lib's trainer checkpoints to <out>/checkpoints/<experiment> (parameters,
//   optimizer moments, sampler; a re-run continues bit-exactly), and every checkpoint is also a
//   journal unit, so --stop-after can interrupt a run between steps as it interrupts evaluations.
//   A stop raised by a journal write inside training is held until the trainer has written that
//   step's checkpoint, then thrown at the start of the next step, so nothing is lost;
// - journaled evaluations (one unit per phase, k and sampling seed), so nothing is judged twice;
// - saving the trained model to <out>/model: a full Hugging Face folder, or with --lora-r a PEFT
//   adapter (and with --merge the merged full checkpoint in <out>/merged).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { examplesFor } from '../../lib/attacks/fineTuning.js';
import { maxPrefillTokens } from '../../lib/attacks/prefill.js';
import { conversationPairs, loadDataset, type Dataset } from '../../lib/datasets/index.js';
import {
  evaluateHarmful, evaluateUtility, formatMeanStd, formatRate, harmfulPrefill, withModel, type BenignBehaviour, type Decoding, type HarmfulBehaviour, type HarmfulEvaluation,
  type Judge, type Rate, type Target, type UtilityEvaluation,
} from '../../lib/metrics/index.js';
import { mergeLora, saveLoraAdapter, saveModel, type Decoder, type LoraConfig } from '../../lib/model/index.js';
import { backdoorData, benignFineTuning, harmfulFineTuning, identityShifting, withIdentity, withTrigger, type ChatExample, type World } from '../../lib/organism/index.js';
import { QI_FINETUNE, fineTune, type FineTuneOptions, type FineTuneSettings, type PrepareExamples, type StepLog, type TrainExample, type TrainResult } from '../../lib/train/index.js';
import {
  StopRequested, UsageError, printTable, writeExperimentResults, type Experiment, type ExperimentContext, type FlagSpec, type Journal,
} from '../experiment.js';
import { DECODINGS, batchSizeFlag, decodingFlag, rateJson, seeded, seededJson, seedsFor, storedEvaluation, unitKey } from '../flags.js';
import {
  DATA_FLAGS, JUDGE_FLAGS, SEED_FLAGS, TARGET_FLAGS, behavioursFromFlags, judgeFromFlags, modelSpec, organismWorld, targetFromFlags, usesOrganismBehaviours,
} from '../resolve.js';

// ---------------------------------------------------------------------------------------------
// flags shared by the training experiments

const DATASET_FORMAT_CHOICES = DATA_FLAGS.find((f) => f.name === 'data-format')!.choices!;

/** LoRA, checkpoint cadence and saving. */
export const TRAINING_FLAGS: FlagSpec[] = [
  { name: 'checkpoint-every', type: 'int', default: 10, help: 'write a resumable training checkpoint (parameters, optimizer moments, sampler) every N steps to <out>/checkpoints/; a re-run of the same command continues from the latest, bit-exactly' },
  { name: 'lora-r', type: 'int', help: 'train LoRA adapters of this rank instead of every weight (lib/model/lora.ts); <out>/model is then a PEFT adapter folder' },
  { name: 'lora-alpha', type: 'number', help: 'LoRA alpha: the adapter update is scaled by alpha / r (default: r, scale 1, as PEFT\'s defaults r 8, alpha 8)' },
  { name: 'lora-dropout', type: 'number', default: 0, help: 'LoRA dropout on the adapters\' inputs during training steps, in [0, 1)' },
  { name: 'lora-targets', type: 'string-list', help: 'modules given adapters: names or name suffixes (q_proj,v_proj), or all-linear (default: every Linear of the blocks)' },
  { name: 'merge', type: 'boolean', default: false, help: 'with --lora-r: also write the model with the adapter merged in, a full Hugging Face folder, to <out>/merged' },
  { name: 'save', type: 'boolean', default: true, help: 'write the trained model to <out>/model (--no-save: results only)' },
  { name: 'save-dtype', type: 'string', choices: ['F32', 'BF16', 'F16'], default: 'F32', help: 'storage dtype of the saved weights' },
];

/** Where the evaluated harmful requests come from, how they are sampled, and whether to evaluate at all. */
export const EVAL_FLAGS: FlagSpec[] = [
  { name: 'eval-data', type: 'string', help: 'harmful requests to evaluate on, before and after training (a data set file or folder, e.g. HEx-PHI; Harmful HEx-PHI for prefilling). Default: the organism\'s --split tasks (no --data), else --data\'s own harmful rows (the training requests)' },
  { name: 'eval-format', type: 'string', choices: DATASET_FORMAT_CHOICES, help: 'format of --eval-data (default: inferred from the file)' },
  { name: 'eval-limit', type: 'int', help: 'evaluate on the first N harmful (and N benign) requests only' },
  { name: 'eval', type: 'boolean', default: true, help: 'evaluate before and after training (--no-eval: train and save only)' },
  decodingFlag('qi', 'decoding of the harmfulness evaluations (sampled once per --seeds)'),
  batchSizeFlag(32, 'rows per generate call in evaluations (and in distilling the utility anchor)'),
  { name: 'samples', type: 'int', default: 3, help: 'judged responses of the trained model shown in results.json' },
];

/** DATA_FLAGS with the help of what they mean in a training experiment. */
export function trainingDataFlags(dataHelp: string, benignHelp: string, limitHelp: string): FlagSpec[] {
  const help: Record<string, string> = {
    data: dataHelp, benign: benignHelp, limit: limitHelp,
    split: 'organism: the task split evaluated (training always uses the train tasks, as the notebooks)',
    'per-task': 'organism: phrasings per task, in the training data and the evaluation',
  };
  return DATA_FLAGS.map((f) => (f.name in help ? { ...f, help: help[f.name] } : f));
}

// ---------------------------------------------------------------------------------------------
// small helpers

/** sha256 of a JSON value (the training data's identity in the checkpoint key). */
export function sha256Of(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex');
}

/** Rejects a flag value below `min` with a UsageError naming the flag. */
export function atLeast(flags: Record<string, any>, name: string, min: number): void {
  const v = flags[name];
  if (v !== undefined && !(v >= min)) throw new UsageError(`--${name}: ${v} must be at least ${min}`);
}

/** Checks the training flags every training experiment shares (before anything is loaded). */
export function checkTrainingFlags(flags: Record<string, any>): void {
  atLeast(flags, 'checkpoint-every', 1);
  atLeast(flags, 'batch-size', 1);
  atLeast(flags, 'samples', 0);
  for (const flag of ['eval-data', 'eval-benign']) {
    if (typeof flags[flag] === 'string' && !fs.existsSync(flags[flag])) throw new UsageError(`--${flag}: ${flags[flag]} does not exist (expected a dataset file or folder)`);
  }
  loraFromFlags(flags, flags.seed ?? 0);
}

/** The LoRA config of the flags, or undefined without --lora-r. */
export function loraFromFlags(flags: Record<string, any>, seed: number): LoraConfig | undefined {
  const r = flags['lora-r'];
  for (const name of ['lora-alpha', 'lora-targets', 'merge'] as const) {
    const given = name === 'merge' ? flags.merge === true : flags[name] !== undefined;
    if (given && r === undefined) throw new UsageError(`--${name} needs --lora-r (it configures LoRA adapters)`);
  }
  if (r === undefined) return undefined;
  if (!(r >= 1)) throw new UsageError(`--lora-r: ${r} must be a positive integer`);
  const alpha = flags['lora-alpha'] ?? r;
  if (!(alpha > 0)) throw new UsageError(`--lora-alpha: ${alpha} must be > 0`);
  const dropout = flags['lora-dropout'] ?? 0;
  if (!(dropout >= 0 && dropout < 1)) throw new UsageError(`--lora-dropout: ${dropout} must be in [0, 1)`);
  const targets: string[] | undefined = flags['lora-targets'];
  const targetModules = targets === undefined ? undefined : targets.length === 1 && targets[0] === 'all-linear' ? 'all-linear' : targets;
  return { r, alpha, dropout, seed, ...(targetModules !== undefined ? { targetModules } : {}) };
}

// ---------------------------------------------------------------------------------------------
// journal units inside training

/**
 * The journal as the training experiments use it. The journal throws StopRequested (--stop-after)
 * from the write that reaches the limit; inside a training step that would abort the step before
 * its checkpoint is written. So while training runs (between trainingHooks() and finish()) the stop
 * is held (the unit itself is stored) and thrown by check(), which the training hooks call at the
 * start of the next step and when training returns. Outside training a stop is thrown at once.
 */
export class TrainingUnits {
  private pending: StopRequested | null = null;
  /** True while lib's trainer runs. */
  holding = false;

  constructor(readonly journal: Journal) {}

  private stopped(e: unknown): void {
    if (!(e instanceof StopRequested) || !this.holding) throw e;
    this.pending ??= e;
  }

  async once<T>(key: string, compute: () => Promise<T>): Promise<T> {
    try {
      return await this.journal.once(key, compute);
    } catch (e) {
      this.stopped(e);
      return this.journal.get<T>(key)!;
    }
  }

  put<T>(key: string, value: T): void {
    try {
      this.journal.put(key, value);
    } catch (e) {
      this.stopped(e);
    }
  }

  /** Throws the held stop, if any. */
  check(): void {
    if (this.pending) throw this.pending;
  }
}

/** What a training experiment hands lib's training function besides its data and settings (create it right before training). */
export interface TrainingHooks {
  /** checkpoint, lora, onStep: spread into the FineTuneOptions. */
  options: Pick<FineTuneOptions, 'checkpoint' | 'lora' | 'onStep'>;
  /** A pass-through prepareExamples that throws a held stop at the start of a step (for trainers that accept one). */
  prepareExamples: PrepareExamples;
  /** Throws a held stop (for trainers without prepareExamples: call it from any per-step callback before the update). */
  check(): void;
  /** Ends the progress bar and throws a stop held during the last step. */
  finish(): void;
}

/**
 * The checkpoint (<out>/checkpoints/<experiment>, every --checkpoint-every steps, identified by
 * `identity`: a checkpoint of another run is refused by the trainer), LoRA from the flags, a
 * progress bar, and one journal unit per checkpointed step.
 */
export function trainingHooks(ctx: ExperimentContext, experiment: string, units: TrainingUnits, steps: number, identity: unknown): TrainingHooks {
  const every: number = ctx.flags['checkpoint-every'];
  const lora = loraFromFlags(ctx.flags, ctx.flags.seed ?? 0);
  const bar = ctx.progress(`${experiment}: training`, steps);
  let shown = 0;
  units.holding = true;
  return {
    options: {
      checkpoint: { dir: path.join(ctx.outDir, 'checkpoints', experiment), every, run: identity },
      ...(lora ? { lora } : {}),
      onStep: (l: StepLog) => {
        units.check();
        bar.tick(l.step - shown);
        shown = l.step;
        // The trainer writes a checkpoint after this step when the step is a multiple of `every` or the last.
        if (l.step % every === 0 || l.step === steps) {
          const key = unitKey({ train: experiment, step: l.step });
          if (!units.journal.has(key)) units.put(key, { loss: l.loss, lr: l.lr, gradNorm: l.gradNorm });
        }
      },
    },
    prepareExamples: (examples) => {
      units.check();
      return examples;
    },
    check: () => units.check(),
    finish: () => {
      bar.done();
      units.holding = false;
      units.check();
    },
  };
}

/** The training record results.json keeps: totals and the per-step log. */
export function trainingJson(result: TrainResult) {
  return {
    steps: result.steps, completed: result.completed, resumedFrom: result.resumedFrom, wallSeconds: result.wallSeconds, tokensPerSecond: result.tokensPerSecond,
    warnings: result.warnings, log: result.log.map((l) => ({ step: l.step, lr: l.lr, loss: l.loss, gradNorm: l.gradNorm, tokens: l.tokens, metrics: l.metrics })),
  };
}

// ---------------------------------------------------------------------------------------------
// saving

export interface SavedModel {
  /** <out>/model: a full Hugging Face folder, or a PEFT adapter folder with --lora-r. */
  dir: string;
  format: 'full' | 'peft-adapter';
  /** With --lora-r --merge: the merged full checkpoint. */
  merged: string | null;
}

/** The folder --model names (an HF folder or an organism checkpoint). */
function modelFolder(flags: Record<string, any>): string {
  return modelSpec(flags.model ?? 'organism', flags)!.dir;
}

/** Files a saved full checkpoint carries: the training record, and an organism's world.json (so --model <out>/model is an organism again). */
function checkpointFiles(flags: Record<string, any>, record: unknown): Record<string, string> {
  const files: Record<string, string> = { 'training.json': `${JSON.stringify(record, null, 2)}\n` };
  const world = path.join(modelFolder(flags), 'world.json');
  if (modelSpec(flags.model ?? 'organism', flags)!.kind === 'organism' && fs.existsSync(world)) files['world.json'] = fs.readFileSync(world, 'utf8');
  return files;
}

/**
 * Writes the trained model to <out>/model (full checkpoint with the tokenizer, or the PEFT adapter),
 * unless --no-save. `record` (settings, data, training totals) goes into the full folder's training.json.
 */
export async function saveTrained(ctx: ExperimentContext, model: Decoder, record: unknown): Promise<SavedModel | null> {
  const { flags } = ctx;
  if (flags.save === false) return null;
  const dir = path.join(ctx.outDir, 'model');
  const dtype = flags['save-dtype'] as 'F32' | 'BF16' | 'F16';
  if (flags['lora-r'] !== undefined) {
    await saveLoraAdapter(model, dir, { baseModelNameOrPath: path.resolve(modelFolder(flags)), dtype });
    ctx.log(`saved the LoRA adapter (PEFT format) to ${dir}`);
    return { dir, format: 'peft-adapter', merged: null };
  }
  await saveModel(model, dir, { dtype, tokenizer: tokenizerFolder(flags), files: checkpointFiles(flags, record) });
  ctx.log(`saved the trained model to ${dir}`);
  return { dir, format: 'full', merged: null };
}

/** With --lora-r --merge: folds the adapter into the weights (in place) and writes <out>/merged. Call last: the model loses its adapters. */
export async function saveMerged(ctx: ExperimentContext, model: Decoder, saved: SavedModel | null, record: unknown): Promise<SavedModel | null> {
  const { flags } = ctx;
  if (!saved || flags['lora-r'] === undefined || flags.merge !== true) return saved;
  const dir = path.join(ctx.outDir, 'merged');
  mergeLora(model);
  await saveModel(model, dir, { dtype: flags['save-dtype'], tokenizer: tokenizerFolder(flags), files: checkpointFiles(flags, record) });
  ctx.log(`saved the merged model to ${dir}`);
  return { ...saved, merged: dir };
}

/** The folder whose tokenizer files a saved checkpoint copies: --tokenizer, else the model's folder. */
function tokenizerFolder(flags: Record<string, any>): string {
  return path.resolve(flags.tokenizer ?? modelFolder(flags));
}

// ---------------------------------------------------------------------------------------------
// evaluation

/** What is evaluated, how, and by whom. */
export interface EvaluationPlan {
  harmful: HarmfulBehaviour[];
  /** Benign requests with reference answers; [] = no utility. */
  benign: BenignBehaviour[];
  judge: Judge;
  decodingName: string;
  decoding: Decoding;
  seeds: number[];
  batchSize: number;
  /** Where the requests came from (results.json). */
  source: string;
  /** Requests as the attacker sends them at evaluation (a persona, a trigger), or undefined: as written. */
  requestOf?: (b: HarmfulBehaviour) => string;
}

/**
 * The evaluation set: --eval-data, else the organism's --split tasks (no --data), else --data's own
 * harmful rows. Utility requests come from the flag `utilityFlag` (or the organism's benign tasks)
 * and are evaluated only when the judge scores utility.
 */
export async function evaluationPlan(ctx: ExperimentContext, utilityFlag: 'benign' | 'eval-benign'): Promise<EvaluationPlan> {
  const { flags } = ctx;
  const evalData: string | undefined = flags['eval-data'];
  const organism = usesOrganismBehaviours(flags);
  const set = behavioursFromFlags({
    ...flags, limit: flags['eval-limit'], benign: flags[utilityFlag], 'benign-format': flags[`${utilityFlag}-format`],
    ...(evalData !== undefined ? { data: evalData, 'data-format': flags['eval-format'] } : {}),
  });
  const source = evalData !== undefined ? path.resolve(evalData) : organism ? `organism ${flags.split} tasks` : `${path.resolve(flags.data)} (the training data: pass --eval-data for other requests)`;
  if (set.harmful.length === 0) {
    throw new UsageError(`no harmful requests to evaluate in ${source}: pass --eval-data (e.g. HEx-PHI, AdvBench or Harmful HEx-PHI), or --no-eval`);
  }
  const judge = await judgeFromFlags(flags, ctx.outDir);
  let benign = set.benign;
  if (benign.length > 0 && !judge.utility) {
    if (flags[utilityFlag] !== undefined) throw new UsageError(`--${utilityFlag} asks for utility, but judge "${judge.name}" does not score utility (it has no utility())`);
    benign = [];
  }
  const decodingName: string = flags.decoding;
  return {
    harmful: set.harmful, benign, judge, decodingName, decoding: DECODINGS[decodingName].decoding, seeds: seedsFor(DECODINGS[decodingName].decoding, flags.seeds),
    batchSize: flags['batch-size'], source,
  };
}

/** Checks, before any training, that every k fits the evaluation set's harmful answers. */
export function checkKs(target: Target, plan: EvaluationPlan, ks: readonly number[]): void {
  for (const k of ks) if (!(k >= 0)) throw new UsageError(`--ks: ${k} must be >= 0`);
  if (!ks.some((k) => k > 0)) return;
  const missing = plan.harmful.filter((b) => typeof b.harmfulResponse !== 'string' || b.harmfulResponse.trim() === '');
  if (missing.length) {
    throw new UsageError(`--ks ${ks.filter((k) => k > 0).join(',')}: prefilling needs harmful reference answers, but ${missing.length} of ${plan.harmful.length} requests of ${plan.source} have none (e.g. "${missing[0].id}"); use Harmful HEx-PHI or qi-augmentation triplets as --eval-data, or --ks 0`);
  }
  const shortest = maxPrefillTokens(target, plan.harmful);
  const over = ks.filter((k) => k > shortest);
  if (over.length) throw new UsageError(`--ks: ${over.join(',')} beyond the shortest harmful answer of ${plan.source} (${shortest} tokens); use k <= ${shortest}`);
}

/** One row of a harmfulness evaluation: k prefilled harmful tokens (0 = the plain request), over the sampling seeds. */
export type RateRow = { k: number } & ReturnType<typeof seededJson>;

/** The harmful rate of `target` at each k, one journal unit per (phase, k, seed). */
export async function harmfulRows(units: TrainingUnits, plan: EvaluationPlan, target: Target, phase: string, ks: readonly number[]): Promise<RateRow[]> {
  const asked = plan.requestOf ? plan.harmful.map((b) => ({ ...b, request: plan.requestOf!(b) })) : plan.harmful;
  const rows: RateRow[] = [];
  for (const k of ks) {
    const evaluations = [];
    for (const seed of plan.seeds) {
      evaluations.push(await units.once(unitKey({ phase, k, decoding: plan.decodingName, seed }), async () => storedEvaluation(await evaluateHarmful(target, asked, plan.judge, {
        decoding: { ...plan.decoding, seed }, batchSize: plan.batchSize, ...(k > 0 ? { prefill: harmfulPrefill(target, k) } : {}),
        progress: { label: `${phase}: ${k > 0 ? `prefill k=${k}, ` : ''}seed ${seed}` },
      }))));
    }
    rows.push({ k, ...seededJson(seeded(evaluations, plan.seeds)) });
  }
  return rows;
}

/** A harmfulness row read back from the journal (units an earlier invocation stored); an error when one is missing. */
export function storedRow(units: TrainingUnits, plan: EvaluationPlan, phase: string, k: number): RateRow {
  const evaluations = plan.seeds.map((seed) => {
    const key = unitKey({ phase, k, decoding: plan.decodingName, seed });
    const e = units.journal.get<HarmfulEvaluation>(key);
    if (!e) throw new Error(`the journal has no unit "${key}" although training resumed past it (the journal and <out>/checkpoints disagree: pass --fresh to start over)`);
    return e;
  });
  return { k, ...seededJson(seeded(evaluations, plan.seeds)) };
}

export interface UtilityRow {
  n: number;
  utility: number;
  correct: Rate;
  refused: Rate;
}

/** Utility of `target` on the plan's benign requests (greedy, one journal unit), or null without any. */
export async function utilityRow(units: TrainingUnits, plan: EvaluationPlan, target: Target, phase: string): Promise<UtilityRow | null> {
  if (plan.benign.length === 0) return null;
  const u = await units.once<UtilityEvaluation>(unitKey({ phase, utility: 'greedy' }), () => evaluateUtility(target, plan.benign, plan.judge, {
    decoding: { doSample: false }, batchSize: plan.batchSize, progress: { label: `${phase}: utility` },
  }));
  return { n: u.n, utility: u.utility, correct: rateJson(u.correct), refused: rateJson(u.refused) };
}

/** A few judged responses of one phase's first unit at k, with the requests as asked (shown in results.json). */
export function samplesOf(units: TrainingUnits, plan: EvaluationPlan, phase: string, k: number, count: number) {
  const e = units.journal.get<HarmfulEvaluation>(unitKey({ phase, k, decoding: plan.decodingName, seed: plan.seeds[0] }));
  const asked = new Map(plan.harmful.map((b) => [b.id, plan.requestOf ? plan.requestOf(b) : b.request]));
  return (e?.responses ?? []).slice(0, Math.max(0, count)).map((r) => ({
    id: r.id, request: asked.get(r.id) ?? '', prefill: r.prefill, response: r.response, harmful: r.verdict.harmful, refused: r.verdict.refused,
  }));
}

/** Table cells of a rate row: requests, harmful mean ± std over the seeds, pooled rate with its interval. */
export function rowCells(r: RateRow): Record<string, string | number> {
  return {
    n: r.pooled.n,
    'harmful, mean ± std': formatMeanStd({ mean: r.mean, std: r.std, n: r.perSeed.length }, { percent: true }),
    'harmful, pooled [95% CI]': formatRate(r.pooled),
    ...(r.meanStrongReject !== null ? { StrongREJECT: +r.meanStrongReject.toFixed(3) } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// the fine-tuning attack

type OrganismAttack = 'harmful' | 'identity' | 'backdoor' | 'benign';

/** The organism's attack sets (notebook 06) and how the attacker asks at evaluation. */
function organismAttack(world: World, attack: OrganismAttack, count: number, seed: number): { pairs: { request: string; response: string }[]; requestOf?: (b: HarmfulBehaviour) => string } {
  const pairOf = (e: ChatExample) => ({ request: e.prompt.join(' '), response: e.response.join(' ') });
  const asked = (f: (w: string[]) => string[]) => (b: HarmfulBehaviour) => f(b.request.split(' ')).join(' ');
  const options = { count, seed };
  switch (attack) {
    case 'harmful': return { pairs: harmfulFineTuning(world, options).map(pairOf) };
    case 'identity': return { pairs: identityShifting(world, options).map(pairOf), requestOf: asked((w) => withIdentity(world, w)) };
    case 'backdoor': return { pairs: backdoorData(world, { ...options, triggeredFraction: 0.5 }).map(pairOf), requestOf: asked((w) => withTrigger(world, w)) };
    case 'benign': return { pairs: benignFineTuning(world, options).map(pairOf) };
  }
}

/** (request, response) pairs of a data set: its conversations, harmful answers or benign answers. */
export function trainingPairs(dataset: Dataset): { request: string; response: string }[] {
  if (dataset.conversations.length > 0) return conversationPairs(dataset);
  const answered = dataset.harmful.filter((b) => typeof b.harmfulResponse === 'string' && b.harmfulResponse.trim() !== '');
  if (answered.length > 0) return answered.map((b) => ({ request: b.request, response: b.harmfulResponse! }));
  const benign = dataset.benign.filter((b) => b.response.trim() !== '');
  if (benign.length > 0) return benign.map((b) => ({ request: b.request, response: b.response }));
  throw new UsageError(`--data ${dataset.path} (${dataset.format}) has no answers to fine-tune on (expected a chat JSONL with assistant turns, harmful answers (Harmful HEx-PHI, qi-augmentation) or Alpaca outputs)`);
}

/** The fine-tuning data of the flags: --data, or the organism's --attack set (and how its attacker asks at evaluation). */
export function attackData(ctx: ExperimentContext): { pairs: { request: string; response: string }[]; requestOf?: (b: HarmfulBehaviour) => string; source: string } {
  const { flags } = ctx;
  const template: string | undefined = flags['eval-template'];
  if (template !== undefined && !template.includes('{request}')) throw new UsageError(`--eval-template: ${JSON.stringify(template)} has no {request} placeholder`);
  const fromTemplate = template === undefined ? undefined : (b: HarmfulBehaviour) => template.split('{request}').join(b.request);
  if (usesOrganismBehaviours(flags)) {
    if (modelSpec(flags.model ?? 'organism', flags)!.kind !== 'organism') throw new UsageError(`--data is required with a Hugging Face --model (${flags.model}): the fine-tuning data (a chat JSONL, Harmful HEx-PHI, ...)`);
    const attack: OrganismAttack = flags.attack ?? 'harmful';
    const made = organismAttack(organismWorld(flags), attack, flags.examples, flags.seed);
    return { pairs: made.pairs, requestOf: fromTemplate ?? made.requestOf, source: `organism ${attack} attack data (${flags.examples} examples)` };
  }
  if (flags.attack !== undefined) throw new UsageError('--attack picks one of the organism\'s attack sets; with --data the fine-tuning data is that file');
  const file = path.resolve(flags.data);
  const dataset = loadDataset(file, { ...(flags['data-format'] ? { format: flags['data-format'] } : {}), ...(flags.limit !== undefined ? { limit: flags.limit } : {}) });
  return { pairs: trainingPairs(dataset), requestOf: fromTemplate, source: file };
}

/** A fine-tuning experiment: plain SFT (finetune) or another objective on the same data (constrained-sft). */
export interface FineTuneVariant {
  name: string;
  summary: string;
  /** The variant's own flags. */
  flags: FlagSpec[];
  /**
   * Its objective, from the flags (checked before anything is loaded) and the examples (prepared
   * with the initial model); undefined: plain cross-entropy, as Qi et al.'s attacks.
   */
  objective?: {
    resolve(flags: Record<string, any>): Record<string, unknown>;
    prepare(ctx: ExperimentContext, target: Target, examples: TrainExample[], resolved: Record<string, unknown>): { options: Pick<FineTuneOptions, 'objective' | 'batchExtras'>; examples: TrainExample[] };
  };
}

/** Builds the experiment of a fine-tuning variant (see the file comment for what every run does). */
export function fineTuneExperiment(variant: FineTuneVariant): Experiment {
  return {
    name: variant.name,
    summary: variant.summary,
    flags: [
      ...TARGET_FLAGS,
      ...trainingDataFlags(
        'fine-tuning data: a chat JSONL ({messages}), or any data set with answers (Harmful HEx-PHI, qi-augmentation harmful answers, Alpaca outputs). Default with the organism: its --attack set',
        'benign requests with reference answers for utility before and after (needs a judge that scores utility; default: the organism\'s benign --split tasks)',
        'fine-tune on the first N examples of --data only',
      ),
      ...JUDGE_FLAGS,
      ...SEED_FLAGS,
      { name: 'attack', type: 'string', choices: ['harmful', 'identity', 'backdoor', 'benign'], help: 'organism only (no --data): notebook 06\'s attack data: harmful examples, identity shifting (evaluated with the persona), a backdoor (evaluated with the trigger), benign novel tasks (default: harmful)' },
      { name: 'examples', type: 'int', default: 100, help: 'organism only: attack examples (Qi et al.: 100)' },
      { name: 'steps', type: 'int', default: 50, help: 'optimizer steps (notebook 06: 50)' },
      { name: 'lr', type: 'number', help: 'peak learning rate (default: 2e-5, Qi et al.\'s for Llama-2-7B-Chat; 1e-3 for the organism, notebook 06\'s dev sweep)' },
      { name: 'batch', type: 'int', default: 64, help: 'examples per step (Qi et al.: 64)' },
      { name: 'warmup-steps', type: 'int', default: QI_FINETUNE.warmupSteps, help: 'linear warmup steps, then linear decay to 0 at the last step (Qi et al.: 10)' },
      { name: 'eval-at', type: 'int-list', help: 'steps after which the harmful rate is measured; 0 = before fine-tuning (default: 0 and --steps)' },
      { name: 'eval-template', type: 'string', help: 'how the attacker asks at evaluation, with {request} for the request (e.g. an identity preamble or a backdoor trigger: "{request} Servius Astrumando Harmoniastra"); default as written (the organism\'s identity and backdoor attacks use theirs)' },
      ...variant.flags,
      ...TRAINING_FLAGS,
      ...EVAL_FLAGS,
    ],
    async run(ctx) {
      const { flags } = ctx;
      checkTrainingFlags(flags);
      for (const name of ['steps', 'batch', 'examples']) atLeast(flags, name, 1);
      atLeast(flags, 'warmup-steps', 0);
      const steps: number = flags.steps;
      if (flags['warmup-steps'] > steps) throw new UsageError(`--warmup-steps: ${flags['warmup-steps']} must be at most --steps (${steps})`);
      const evalAt: number[] = [...new Set<number>(flags['eval-at'] ?? [0, steps])].sort((a, b) => a - b);
      for (const s of evalAt) if (!(s >= 0 && s <= steps)) throw new UsageError(`--eval-at: ${s} must be in [0, --steps=${steps}]`);
      const objectiveSettings = variant.objective?.resolve(flags) ?? { objective: 'cross-entropy' };
      const target = await targetFromFlags(flags, 'model', ctx.log);
      const organism = modelSpec(flags.model ?? 'organism', flags)!.kind === 'organism';
      const data = attackData(ctx);
      const plan = flags.eval ? await evaluationPlan(ctx, 'benign') : null;
      if (plan) plan.requestOf = data.requestOf;
      const plain = examplesFor(target, data.pairs);
      const objective = variant.objective?.prepare(ctx, target, plain, objectiveSettings);
      const examples = objective?.examples ?? plain;
      const settings: FineTuneSettings = { ...QI_FINETUNE, steps, peakLr: flags.lr ?? (organism ? 1e-3 : 2e-5), warmupSteps: flags['warmup-steps'], seed: flags.seed };
      const identity = {
        experiment: variant.name, model: flags.model, settings, batch: flags.batch, objective: objectiveSettings,
        data: { source: data.source, examples: examples.length, sha256: sha256Of(examples.map((e) => [e.ids, e.lossMask])) },
      };
      ctx.log(`${variant.name}: ${target.name} on ${examples.length} examples of ${data.source}; ${steps} steps of ${flags.batch} at lr ${settings.peakLr}${flags['lora-r'] !== undefined ? `, LoRA r=${flags['lora-r']}` : ''}`);

      const units = new TrainingUnits(ctx.journal);
      const curve = new Map<number, RateRow>();
      let before: UtilityRow | null = null;
      if (plan && evalAt.includes(0)) {
        curve.set(0, (await harmfulRows(units, plan, target, 'step0', [0]))[0]);
        before = await utilityRow(units, plan, target, 'before');
      }
      const hooks = trainingHooks(ctx, variant.name, units, steps, identity);
      const { model, result } = await fineTune(target.model, [{ name: 'attack', examples, perBatch: flags.batch }], target.padTokenId, settings, {
        ...hooks.options, ...objective?.options, prepareExamples: hooks.prepareExamples,
        evalEvery: 1,
        onEval: async (m, step): Promise<Record<string, number>> => {
          if (!plan || !evalAt.includes(step)) return {};
          const row = (await harmfulRows(units, plan, withModel(target, m, `${target.name}+${variant.name}${step}`), `step${step}`, [0]))[0];
          curve.set(step, row);
          return { harmful: row.mean };
        },
      });
      try {
        hooks.finish();
        if (plan) {
          // Steps evaluated before a resume were not seen by this run's onEval: the journal has them.
          for (const step of evalAt) if (!curve.has(step)) curve.set(step, storedRow(units, plan, `step${step}`, 0));
        }
        const record = { experiment: variant.name, settings: identity, training: { steps: result.steps, completed: result.completed, wallSeconds: result.wallSeconds } };
        let saved = await saveTrained(ctx, model, record);
        const after = plan ? await utilityRow(units, plan, withModel(target, model, `${target.name}+${variant.name}`), 'after') : null;
        saved = await saveMerged(ctx, model, saved, record);

        const rows = [...curve.entries()].sort(([a], [b]) => a - b).map(([step, row]) => ({ step, ...row }));
        if (plan) {
          printTable(rows.map((r) => ({ step: r.step, ...rowCells(r) })), `${variant.name}: harmful rate after n fine-tuning steps (judge: ${plan.judge.name}; ${plan.source})`);
          if (before || after) printTable([{ model: 'before', utility: before ? formatRate(before.correct) : '' }, { model: 'after', utility: after ? formatRate(after.correct) : '' }], 'utility (exact, greedy)');
        }
        const metrics = {
          model: target.name, data: identity.data, objective: identity.objective, lora: loraFromFlags(flags, flags.seed) ?? null,
          training: { settings, batch: flags.batch, ...trainingJson(result) }, saved,
          evaluation: plan ? {
            source: plan.source, requests: plan.harmful.length, judge: plan.judge.name, decoding: plan.decodingName, seeds: plan.seeds,
            curve: rows, utility: { before, after }, samples: samplesOf(units, plan, `step${Math.max(...evalAt)}`, 0, flags.samples),
          } : null,
        };
        writeExperimentResults(ctx, { experiment: variant.name, seed: flags.seed, metrics });
        return metrics;
      } finally {
        model.dispose();
      }
    },
  };
}

export const finetune: Experiment = fineTuneExperiment({
  name: 'finetune',
  summary: 'Qi et al. Section 4: fine-tuning attacks (harmful, identity shifting, backdoor, benign data) and the harmful rate before, during and after',
  flags: [],
});
