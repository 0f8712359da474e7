// The training loop. Stages per step, in order: lr from the schedule -> batch (-> examples rebuilt
// from the current model by `prepareExamples`, when given) -> forward/backward
// (objective inside the gradient tape) -> global-norm clip -> AdamW step -> log -> eval callback ->
// checkpoint. Checkpoints hold parameters, optimizer moments, step, sampler state and the log, are
// written atomically (temp folder + rename), and a run pointed at a folder that holds one resumes
// from it, giving bit-identical parameters to an uninterrupted run on the same backend.
//
// Non-finite values stop the run before they do damage: the loss, the gradient global norm and
// the parameter values the AdamW update would produce (a trial update, summed: weight decay at a
// huge lr overflows weights even from finite gradients) are checked for NaN/±Infinity BEFORE
// anything is assigned, in the one download per step that reads the loss. On a non-finite value
// train() throws, naming the step, the lr and the quantity (and the parameters concerned), and
// leaves the parameters, the optimizer state, the sampler and the last checkpoint exactly as they
// were before that step.
//
// A gradient norm of exactly 0 is not an error (a margin objective that is satisfied, a batch
// without target tokens), but several consecutive steps of it mean the objective gives the
// parameters no signal: usually activations saturated by a divergence (a learning rate far too
// high; the weights then move by weight decay and momentum alone, towards overflow) or a loss
// mask that selects nothing. After `zeroGradWarnSteps` such steps in a row (default 5) train()
// warns once per streak (`onWarning`, default console.warn; also in TrainResult.warnings) and
// goes on.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { tf } from '../engine/tf.js';
import { loadSafetensors, readJsonFile, writeSafetensors } from '../io/index.js';
import type { Batch, CausalLM, Objective } from '../objectives/index.js';
import { collate, disposeBatch, MixedBatchSampler, SamplerState, TrainExample } from './data.js';
import { AdamW, AdamWOptions, clipByGlobalNorm } from './optimizer.js';
import { learningRateAt, LrSchedule, validateSchedule } from './schedule.js';

export interface StepLog {
  /** 1-based: the number of optimizer steps taken after this one. */
  step: number;
  lr: number;
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Non-padding tokens in the batch. */
  tokens: number;
  /** Non-padding tokens per second of this step (forward, backward and update). */
  tokensPerSecond: number;
  metrics: Record<string, number>;
}

export interface EvalLog {
  step: number;
  metrics: Record<string, number>;
}

export interface TrainOptions {
  model: CausalLM;
  /** Trainable parameters by (Hugging Face) name. */
  params: Map<string, tf.Variable>;
  objective: Objective;
  sampler: MixedBatchSampler;
  padId: number;
  /** totalSteps is the run's length. */
  schedule: LrSchedule;
  optimizer?: AdamWOptions;
  /** Global gradient-norm clip; default 1.0; null disables. */
  clipNorm?: number | null;
  /** Checkpoint folder and cadence (in steps). A folder holding a checkpoint is resumed from,
   *  only if it was written by the same run: objective, schedule, optimizer, clipping, parameter
   *  names and `run` (the caller's description of its data and settings, any JSON) must match. */
  checkpoint?: { dir: string; every: number; run?: unknown };
  /** Return after this many total steps, as if interrupted (for resume tests and time budgets). */
  stopAfter?: number;
  evalEvery?: number;
  onEval?: (step: number) => Promise<Record<string, number>> | Record<string, number>;
  /** Called after each step (progress bars). */
  onStep?: (log: StepLog, totalSteps: number) => void;
  /** Build objective-specific batch extras from the examples (e.g. prefill spans). */
  batchExtras?: (examples: TrainExample[]) => Record<string, unknown>;
  /**
   * Replace a step's examples by examples built from the model being trained, before they are
   * collated (training data that depends on the current model, e.g. worst-insertion training).
   * Called once per step, with the 0-based index of the step about to be taken and the model as it
   * is before that step; it must return one example per input example (same order, same sources).
   * For exact resume it must be a function of (examples, step, model) only: a resumed run restores
   * the model and the sampler, so it sees the same inputs and builds the same examples.
   */
  prepareExamples?: PrepareExamples;
  /** Warn after this many consecutive steps with gradient norm exactly 0 (default 5; null: never). */
  zeroGradWarnSteps?: number | null;
  /** Where warnings go (default console.warn); they are also returned in TrainResult.warnings. */
  onWarning?: (message: string) => void;
}

/** What TrainOptions.prepareExamples sees besides the examples. */
export interface PrepareContext {
  /** 0-based index of the step about to be taken (= optimizer steps taken so far). */
  step: number;
  /** The source of each example. */
  sources: string[];
  /** The model being trained, before this step's update. */
  model: CausalLM;
}

export type PrepareExamples = (examples: TrainExample[], context: PrepareContext) => TrainExample[] | Promise<TrainExample[]>;

/** The prepared examples, checked: one per input example, ids and loss mask of equal length >= 2. */
async function prepareStep(prepare: PrepareExamples, examples: TrainExample[], context: PrepareContext): Promise<TrainExample[]> {
  const out = await prepare(examples, context);
  if (!Array.isArray(out) || out.length !== examples.length) {
    throw new Error(`train: \`prepareExamples\` returned ${Array.isArray(out) ? out.length : typeof out} examples at step ${context.step + 1} for ${examples.length} sampled (it must return one per sampled example)`);
  }
  out.forEach((e, i) => {
    if (!e || !Array.isArray(e.ids) || !Array.isArray(e.lossMask) || e.ids.length !== e.lossMask.length || e.ids.length < 2) {
      throw new Error(`train: \`prepareExamples\` example ${i} at step ${context.step + 1} must have ids and lossMask of the same length >= 2`);
    }
  });
  return out;
}

export interface TrainResult {
  /** Steps completed in total (including steps before a resume). */
  steps: number;
  completed: boolean;
  resumedFrom: number | null;
  log: StepLog[];
  evals: EvalLog[];
  /** This run only (excluding resumed-over steps). */
  wallSeconds: number;
  /** Non-padding tokens per second over this run's steps. */
  tokensPerSecond: number;
  tokens: number;
  /** Warnings of this run (e.g. a streak of zero gradient norms). */
  warnings: string[];
}

/** Default of TrainOptions.zeroGradWarnSteps. */
export const ZERO_GRAD_WARN_STEPS = 5;

interface CheckpointState {
  version: 1;
  objective: string;
  step: number;
  optimizerStep: number;
  sampler: SamplerState;
  schedule: LrSchedule;
  log: StepLog[];
  evals: EvalLog[];
  /** What makes two runs the same run (compared field by field on resume). */
  identity?: RunIdentity;
}

interface RunIdentity {
  objective: string;
  schedule: LrSchedule;
  optimizer: AdamWOptions;
  clipNorm: number | null;
  parameters: string[];
  run: unknown;
}

/** The first path at which two JSON values differ, or null. */
function firstDifference(a: unknown, b: unknown, at = ''): string | null {
  if (a === b) return null;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null || Array.isArray(a) !== Array.isArray(b)) return at || '(root)';
  const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
  for (const k of keys) {
    const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], at ? `${at}.${k}` : k);
    if (d) return d;
  }
  return null;
}

const CKPT = 'trainer';

function checkpointPaths(dir: string) {
  return { live: path.join(dir, CKPT), tmp: path.join(dir, `${CKPT}.tmp`), old: path.join(dir, `${CKPT}.old`) };
}

/** The folder of the latest complete checkpoint under dir, or null. */
export function findCheckpoint(dir: string): string | null {
  const { live, old } = checkpointPaths(dir);
  for (const candidate of [live, old]) if (fs.existsSync(path.join(candidate, 'state.json'))) return candidate;
  return null;
}

function writeCheckpoint(dir: string, params: Map<string, tf.Variable>, optimizer: AdamW, state: CheckpointState): void {
  const { live, tmp, old } = checkpointPaths(dir);
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const asWrite = (name: string, t: tf.Tensor) => ({ name, shape: t.shape, data: () => t.dataSync() as Float32Array });
  writeSafetensors(path.join(tmp, 'params.safetensors'), [...params].map(([n, v]) => asWrite(n, v)));
  writeSafetensors(path.join(tmp, 'optimizer.safetensors'), optimizer.stateTensors().map(({ name, tensor }) => asWrite(name, tensor)));
  // state.json last: its presence marks the folder complete.
  fs.writeFileSync(path.join(tmp, 'state.json'), JSON.stringify(state));
  // Swap: live -> old, tmp -> live, drop old. A crash between renames leaves `old` complete.
  fs.rmSync(old, { recursive: true, force: true });
  if (fs.existsSync(live)) fs.renameSync(live, old);
  fs.renameSync(tmp, live);
  fs.rmSync(old, { recursive: true, force: true });
}

const STATE_WHAT = 'the training state written by train() (step, optimizer step, sampler state, log)';

/** A checkpoint's state.json, checked field by field; errors name the file. */
function readState(folder: string): CheckpointState {
  const file = path.join(folder, 'state.json');
  const state = readJsonFile<CheckpointState>(file, STATE_WHAT);
  const bad = (field: string, want: string) => new Error(`${file}: \`${field}\` must be ${want}, but is ${JSON.stringify((state as any)[field])}; `
    + 'the checkpoint is damaged: delete the folder to start over');
  if (state.version !== 1) throw bad('version', '1');
  for (const f of ['step', 'optimizerStep'] as const) if (!Number.isInteger(state[f]) || state[f] < 0) throw bad(f, 'an integer >= 0');
  if (typeof state.sampler !== 'object' || state.sampler === null || !Array.isArray(state.sampler.sources)) throw bad('sampler', 'a sampler state ({ sources: [...] })');
  if (!Array.isArray(state.log)) throw bad('log', 'an array of step records');
  if (!Array.isArray(state.evals)) throw bad('evals', 'an array of eval records');
  return state;
}

function readCheckpoint(folder: string, params: Map<string, tf.Variable>, optimizer: AdamW): CheckpointState {
  const state = readState(folder);
  const saved = loadSafetensors(path.join(folder, 'params.safetensors'));
  for (const [name, v] of params) {
    const t = saved.get(name);
    if (!t) throw new Error(`train: checkpoint ${folder} has no parameter "${name}"`);
    if (t.shape.join(',') !== v.shape.join(',')) throw new Error(`train: checkpoint ${folder} parameter "${name}" has shape [${t.shape}], the model has [${v.shape}]`);
    tf.tidy(() => v.assign(tf.tensor(t.data, t.shape, 'float32')));
  }
  optimizer.loadState(state.optimizerStep, loadSafetensors(path.join(folder, 'optimizer.safetensors')));
  return state;
}

export async function train(options: TrainOptions): Promise<TrainResult> {
  const { model, params, objective, sampler, schedule } = options;
  validateSchedule(schedule, 'train');
  const clipNorm = options.clipNorm === undefined ? 1.0 : options.clipNorm;
  if (options.checkpoint && (!Number.isInteger(options.checkpoint.every) || options.checkpoint.every < 1)) {
    throw new Error(`train: \`checkpoint.every\` must be a positive integer, but is ${options.checkpoint.every}`);
  }
  if (clipNorm !== null && !(typeof clipNorm === 'number' && clipNorm > 0)) throw new Error(`train: \`clipNorm\` must be a positive number or null, but is ${clipNorm}`);
  if (options.stopAfter !== undefined && !(Number.isInteger(options.stopAfter) && options.stopAfter >= 0)) {
    throw new Error(`train: \`stopAfter\` must be an integer >= 0, but is ${options.stopAfter}`);
  }
  if (options.evalEvery !== undefined && !(Number.isInteger(options.evalEvery) && options.evalEvery >= 1)) {
    throw new Error(`train: \`evalEvery\` must be a positive integer, but is ${options.evalEvery}`);
  }
  if (!Number.isInteger(options.padId) || options.padId < 0) throw new Error(`train: \`padId\` must be an integer >= 0, but is ${options.padId}`);
  const zeroGradWarnSteps = options.zeroGradWarnSteps === undefined ? ZERO_GRAD_WARN_STEPS : options.zeroGradWarnSteps;
  if (zeroGradWarnSteps !== null && !(Number.isInteger(zeroGradWarnSteps) && zeroGradWarnSteps >= 1)) {
    throw new Error(`train: \`zeroGradWarnSteps\` must be a positive integer or null, but is ${zeroGradWarnSteps}`);
  }
  const warnings: string[] = [];
  const warn = (message: string) => {
    warnings.push(message);
    (options.onWarning ?? console.warn)(message);
  };
  const optimizer = new AdamW(params, options.optimizer);
  const varList = [...params.values()];
  const names = [...params.keys()];
  let step = 0;
  let resumedFrom: number | null = null;
  let log: StepLog[] = [];
  let evals: EvalLog[] = [];
  const found = options.checkpoint ? findCheckpoint(options.checkpoint.dir) : null;
  // JSON round trip: undefined fields vanish exactly as they do in the saved state.json
  const identity = JSON.parse(JSON.stringify({
    objective: objective.name, schedule, optimizer: options.optimizer ?? {}, clipNorm, parameters: names, run: options.checkpoint?.run ?? null,
  })) as RunIdentity;
  if (found) {
    const saved = readState(found);
    const differs = firstDifference(saved.identity ?? null, identity);
    if (differs) {
      const show = (x: unknown) => JSON.stringify(differs.split('.').reduce((o: any, k) => (o == null ? o : o[k]), x)) ?? 'undefined';
      throw new Error(`train: checkpoint ${found} belongs to another run: \`${differs}\` was ${show(saved.identity)}, this run has ${show(identity)}; `
        + 'delete the folder to start over, or restore the settings to resume');
    }
    const state = readCheckpoint(found, params, optimizer);
    sampler.setState(state.sampler);
    step = state.step;
    resumedFrom = step;
    log = state.log;
    evals = state.evals;
  }
  const stopAt = Math.min(schedule.totalSteps, options.stopAfter ?? Infinity);
  const started = performance.now();
  let runTokens = 0;
  let zeroGradStreak = 0;
  try {
    while (step < stopAt) {
      const lr = learningRateAt(step, schedule);
      const samplerBefore = sampler.getState();
      const sampled = sampler.next();
      const sources = sampled.sources;
      let examples = sampled.examples;
      if (options.prepareExamples) {
        try {
          examples = await prepareStep(options.prepareExamples, examples, { step, sources, model });
        } catch (e) {
          sampler.setState(samplerBefore);
          throw e;
        }
      }
      const batch: Batch = collate(examples, sources, options.padId, options.batchExtras ? options.batchExtras(examples) : {});
      const t0 = performance.now();
      let metricTensors: Record<string, tf.Scalar> = {};
      const owned: tf.Tensor[] = [];
      let loss: number;
      let gradNorm: number;
      const metrics: Record<string, number> = {};
      try {
        const { value, grads } = tf.variableGrads(() => {
          const out = objective.compute(model, batch);
          metricTensors = {};
          for (const [k, v] of Object.entries(out.metrics ?? {})) metricTensors[k] = tf.keep(v);
          return out.loss;
        }, varList);
        owned.push(value, ...Object.values(grads).filter((g) => g));
        for (let i = 0; i < names.length; i++) {
          if (!grads[varList[i].name]) throw new Error(`train: parameter "${names[i]}" received no gradient from objective "${objective.name}"`);
        }
        const byName: Record<string, tf.Tensor> = {};
        names.forEach((n, i) => (byName[n] = grads[varList[i].name]));
        const clipped = clipByGlobalNorm(byName, clipNorm ?? Infinity);
        owned.push(clipped.norm, ...Object.values(clipped.grads));
        const update = clipNorm === null ? byName : clipped.grads;
        // Everything the step would make non-finite is checked before anything is assigned: one
        // download of [loss, grad norm, sum of the parameter values the update would give].
        const trial = optimizer.trialParameterSum(update, lr);
        owned.push(trial);
        const head = tf.tidy(() => tf.stack([value, clipped.norm, trial]));
        owned.push(head);
        const read = await head.data();
        loss = read[0];
        gradNorm = read[1];
        let updateBad: (readonly [string, number, number])[] = [];
        if (Number.isFinite(loss) && Number.isFinite(gradNorm) && !Number.isFinite(read[2])) {
          // Exact counts (the sum alone may overflow with every value finite).
          const counts = optimizer.nonFiniteUpdateCounts(update, lr);
          owned.push(counts);
          const c = await counts.data();
          updateBad = names.map((n, i) => [n, c[i], params.get(n)!.size] as const).filter(([, k]) => k > 0);
        }
        if (!Number.isFinite(loss) || !Number.isFinite(gradNorm) || updateBad.length) {
          sampler.setState(samplerBefore);
          const where = `at step ${step + 1} (lr ${lr})`;
          const kept = `the update was not applied: parameters, optimizer state${options.checkpoint ? ', sampler and the last checkpoint' : ' and sampler'} are as before step ${step + 1}`;
          if (!Number.isFinite(loss)) {
            throw new Error(`train: loss is ${loss} ${where}, gradient norm ${gradNorm}; ${kept}. Lower the learning rate, or check the data and objective "${objective.name}"`);
          }
          if (!Number.isFinite(gradNorm)) {
            const countTensor = tf.tidy(() => tf.stack(names.map((n) => tf.sum(tf.cast(tf.logicalNot(tf.isFinite(byName[n])), 'int32')))));
            owned.push(countTensor);
            const counts = Array.from(await countTensor.data());
            const badGrads = names.map((n, i) => `"${n}" (${counts[i]} of ${params.get(n)!.size} values)`).filter((_, i) => counts[i] > 0);
            const which = badGrads.length
              ? `non-finite gradient of ${badGrads.slice(0, 5).join(', ')}${badGrads.length > 5 ? ', …' : ''}`
              : 'every gradient value is finite but their squared sum overflows float32';
            throw new Error(`train: gradient global norm is ${gradNorm} ${where}, loss ${loss}: ${which}; ${kept}. Lower the learning rate, or check the data and objective "${objective.name}"`);
          }
          const shown = updateBad.slice(0, 5).map(([n, c, size]) => `"${n}" (${c} of ${3 * size} values of the parameter and its two moments)`).join(', ');
          throw new Error(`train: the AdamW update ${where} would make ${shown}${updateBad.length > 5 ? ', …' : ''} non-finite, `
            + `although loss ${loss} and gradient norm ${gradNorm} are finite: the learning rate is too large for these weights; ${kept}`);
        }
        optimizer.applyGradients(update, lr);
        for (const [k, v] of Object.entries(metricTensors)) metrics[k] = (await v.data())[0];
      } finally {
        tf.dispose(owned);
        tf.dispose(Object.values(metricTensors));
        disposeBatch(batch);
      }
      const tokens = examples.reduce((a, e) => a + e.ids.length, 0);
      step++;
      runTokens += tokens;
      zeroGradStreak = gradNorm === 0 ? zeroGradStreak + 1 : 0;
      if (zeroGradWarnSteps !== null && zeroGradStreak === zeroGradWarnSteps) {
        warn(`train: gradient norm has been exactly 0 for ${zeroGradStreak} consecutive steps (steps ${step - zeroGradStreak + 1}-${step}, lr now ${lr}, loss ${loss}): `
          + 'the objective gives the parameters no signal, so only weight decay and AdamW\'s decaying momentum move them. Usually activations '
          + 'saturated by a divergence (a learning rate far too high) or a loss mask that selects no tokens; training goes on');
      }
      const entry: StepLog = { step, lr, loss, gradNorm, tokens, tokensPerSecond: tokens / ((performance.now() - t0) / 1000), metrics };
      log.push(entry);
      options.onStep?.(entry, schedule.totalSteps);
      if (options.onEval && options.evalEvery && (step % options.evalEvery === 0 || step === schedule.totalSteps)) {
        evals.push({ step, metrics: await options.onEval(step) });
      }
      if (options.checkpoint && (step % options.checkpoint.every === 0 || step === stopAt)) {
        writeCheckpoint(options.checkpoint.dir, params, optimizer, {
          version: 1, objective: objective.name, step, optimizerStep: optimizer.stepCount, sampler: sampler.getState(), schedule, log, evals, identity,
        });
      }
    }
  } finally {
    optimizer.dispose();
  }
  const wallSeconds = (performance.now() - started) / 1000;
  return {
    steps: step, completed: step >= schedule.totalSteps, resumedFrom, log, evals, wallSeconds,
    tokensPerSecond: wallSeconds > 0 ? runTokens / wallSeconds : 0, tokens: runTokens, warnings,
  };
}
